#include "addon_data.h"
#include "errors.h"

namespace r1v::bindings {

PendingPromise* PendingPromise::begin(Napi::Env env, Settle settle) {
  AddonData* data = AddonData::get(env);
  auto* pending = new PendingPromise(env, std::move(settle));
  pending->data_ = data;
  if (data->pending++ == 0) data->completions.Ref(env);
  return pending;
}

void PendingPromise::finish(std::exception_ptr error) {
  error_ = error;
  napi_status status =
      data_->completions.NonBlockingCall(this, [](Napi::Env env, Napi::Function, PendingPromise* self) {
        if (--self->data_->pending == 0) self->data_->completions.Unref(env);
        Napi::HandleScope scope(env);
        try {
          if (self->error_) {
            self->deferred_.Reject(make_error(env, self->error_).Value());
          } else {
            self->deferred_.Resolve(self->settle_(env));
          }
        } catch (const Napi::Error& e) {
          self->deferred_.Reject(e.Value());
        } catch (...) {
          self->deferred_.Reject(make_error(env, std::current_exception()).Value());
        }
        delete self;
      });
  if (status != napi_ok) delete this;  // the environment is shutting down: nobody is waiting
}

}  // namespace r1v::bindings
