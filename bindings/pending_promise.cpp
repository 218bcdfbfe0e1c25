#include "addon_data.h"
#include "errors.h"

namespace r1v::bindings {

PendingPromise* PendingPromise::begin(Napi::Env env, Settle settle) {
  AddonData* data = AddonData::get(env);
  auto* pending = new PendingPromise(env, std::move(settle));
  pending->data_ = data;
  if (data->pending.empty()) napi_ref_threadsafe_function(env, data->completions);
  data->pending.insert(pending);
  return pending;
}

void PendingPromise::finish(std::exception_ptr error) {
  error_ = error;
  // Fails only while the environment is torn down: then discard_all() frees this.
  napi_call_threadsafe_function(data_->completions, this, napi_tsfn_nonblocking);
}

void PendingPromise::settle(Napi::Env env) {
  try {
    if (error_) {
      deferred_.Reject(make_error(env, error_).Value());
    } else {
      deferred_.Resolve(settle_(env));
    }
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (...) {
    deferred_.Reject(make_error(env, std::current_exception()).Value());
  }
}

void PendingPromise::deliver(napi_env env, napi_value, void* context, void* pending) {
  if (env == nullptr) return;
  auto* data = static_cast<AddonData*>(context);
  auto* self = static_cast<PendingPromise*>(pending);
  data->pending.erase(self);
  if (data->pending.empty()) napi_unref_threadsafe_function(env, data->completions);
  Napi::HandleScope scope(env);
  try {
    self->settle(env);
  } catch (...) {
    // Rejecting failed too: nothing is left to tell (this runs from C, nothing may escape).
  }
  delete self;
}

void PendingPromise::discard_all(AddonData* data) {
  for (PendingPromise* p : data->pending) delete p;
  data->pending.clear();
}

}  // namespace r1v::bindings
