// Who uses the core's process-wide threads. The CPU pool's workers and the threads of
// streams released by their own work serve every JavaScript environment (the main thread,
// each worker thread) that loaded the addon. Each environment attaches when it loads the
// module and detaches at its teardown, after stopping its own engines. The last one to
// detach waits for every stream to end and joins all those threads, so that no thread runs
// the module's code once the environment may unload it; a later attach starts over (the
// pool starts its workers again with its next parallel region).
#pragma once

namespace r1v {

void attach_environment();
// Call from the environment's own thread, after its engines are stopped (Context::abandon).
void detach_environment();

}  // namespace r1v
