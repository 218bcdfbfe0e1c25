// The collectives (native/collectives/communicator.h), for lib/ops/collectives.ts:
//   commWorld(options?: { timeoutMs? }) → { rank, worldSize, localRank, localSize, backend, timeoutMs }
//   commAllReduce(tensors, op)  commBroadcast(tensors, root)         (in place, queued)
//   commAllGather(x) → tensor   commReduceScatter(x, op) → tensor     (queued)
//   commAllReduceValues(Float64Array, op) → Promise<Float64Array>
//   commAllGatherBytes(Uint8Array) → Promise<Uint8Array[]>   commBroadcastBytes(Uint8Array | undefined, root)
//   commBarrier() → Promise<void>   commAbort(message, exitCode)
// op is 'sum' | 'max' | 'min'. The host collectives take their turn in the order of collectives
// when called, and run on a worker of the libuv pool (they block until the peers take part).
#include <memory>
#include <string>
#include <vector>

#include "../native/collectives/communicator.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

Communicator& world() { return Communicator::world(std::nullopt); }

ReduceOp read_op(const Napi::Value& v, const char* fn) {
  std::string op = read_string(v, concat(fn, ": op").c_str());
  if (op == "sum") return ReduceOp::Sum;
  if (op == "max") return ReduceOp::Max;
  if (op == "min") return ReduceOp::Min;
  fail(ErrorCode::Argument, fn, ": op must be 'sum', 'max' or 'min', got '", op, "'");
}

int read_rank(const Napi::Value& v, const char* name) {
  uint64_t rank = read_index(v, name);
  if (rank > INT32_MAX) fail(ErrorCode::Argument, name, " must be a rank, got ", rank);
  return static_cast<int>(rank);
}

std::vector<Tensor> read_tensors(const Napi::Value& v, const char* fn) {
  if (!v.IsArray()) fail(ErrorCode::Argument, fn, ": tensors must be an array of tensors");
  Napi::Array list = v.As<Napi::Array>();
  std::vector<Tensor> tensors;
  for (uint32_t i = 0; i < list.Length(); ++i)
    tensors.push_back(TensorHandle::unwrap(list.Get(i), concat(fn, ": tensors[", i, "]").c_str()));
  return tensors;
}

std::vector<uint8_t> read_bytes(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    fail(ErrorCode::Argument, name, " must be a Uint8Array");
  auto a = v.As<Napi::Uint8Array>();
  return std::vector<uint8_t>(a.Data(), a.Data() + a.ElementLength());
}

Napi::Uint8Array to_js(Napi::Env env, const std::vector<uint8_t>& bytes) {
  auto out = Napi::Uint8Array::New(env, bytes.size());
  std::copy(bytes.begin(), bytes.end(), out.Data());
  return out;
}

// A host collective run on the libuv pool; its Promise settles on the JavaScript thread.
class HostCollective : public Napi::AsyncWorker {
 public:
  using Result = std::function<Napi::Value(Napi::Env)>;
  HostCollective(Napi::Env env, std::function<void()> work, Result result)
      : Napi::AsyncWorker(env, "r1v.collective"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), result_(std::move(result)) {}
  static Napi::Value start(Napi::Env env, std::function<void()> work, Result result) {
    auto* worker = new HostCollective(env, std::move(work), std::move(result));
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (...) {
      error_ = std::current_exception();
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      if (error_) {
        deferred_.Reject(make_error(env, error_).Value());
      } else {
        deferred_.Resolve(result_(env));
      }
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  Result result_;
  std::exception_ptr error_;
};

Napi::Value comm_world(const Napi::CallbackInfo& info) {
  const char* fn = "Communicator.world";
  expect_count(info, 0, 1, fn);
  auto options = read_options(info[0], concat(fn, ": options").c_str());
  check_option_keys(options, {"timeoutMs"}, fn);
  std::optional<double> timeout = read_number_option(options, "timeoutMs", fn);
  if (timeout && (*timeout != static_cast<double>(static_cast<int64_t>(*timeout)) || *timeout < 1 || *timeout > 1e12))
    fail(ErrorCode::Argument, fn, ": timeoutMs must be an integer in [1, 1e12], got ", *timeout);
  Communicator& comm =
      Communicator::world(timeout ? std::optional<int64_t>(static_cast<int64_t>(*timeout)) : std::nullopt);
  const CommunicatorInfo& c = comm.info();
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("rank", c.rank);
  out.Set("worldSize", c.size);
  out.Set("localRank", c.local_rank);
  out.Set("localSize", c.local_size);
  out.Set("backend", c.backend == CommBackend::Mpi ? "mpi" : "single");
  out.Set("timeoutMs", static_cast<double>(comm.timeout_ms()));
  return out;
}

Napi::Value comm_all_reduce(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "allReduce");
  world().all_reduce(read_tensors(info[0], "allReduce"), read_op(info[1], "allReduce"));
  return info.Env().Undefined();
}

Napi::Value comm_all_reduce_start(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "allReduceStart");
  uint64_t id = world().all_reduce_start(read_tensors(info[0], "allReduceStart"), read_op(info[1], "allReduceStart"));
  return Napi::Number::New(info.Env(), static_cast<double>(id));
}

Napi::Value comm_wait(const Napi::CallbackInfo& info) {
  expect_count(info, 1, 1, "wait");
  if (!info[0].IsNumber()) fail(ErrorCode::Argument, "wait: id must be a number");
  double id = info[0].As<Napi::Number>().DoubleValue();
  if (!(id >= 1 && id <= 9007199254740991.0) || id != static_cast<double>(static_cast<uint64_t>(id)))
    fail(ErrorCode::Argument, "wait: id must be a positive integer, got ", id);
  world().wait(static_cast<uint64_t>(id));
  return info.Env().Undefined();
}

Napi::Value comm_broadcast(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "broadcast");
  world().broadcast(read_tensors(info[0], "broadcast"), read_rank(info[1], "broadcast: root"));
  return info.Env().Undefined();
}

Napi::Value comm_all_gather(const Napi::CallbackInfo& info) {
  expect_count(info, 1, 1, "allGather");
  return TensorHandle::wrap(info.Env(), world().all_gather(TensorHandle::unwrap(info[0], "allGather: x")));
}

Napi::Value comm_reduce_scatter(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "reduceScatter");
  Tensor x = TensorHandle::unwrap(info[0], "reduceScatter: x");
  return TensorHandle::wrap(info.Env(), world().reduce_scatter(x, read_op(info[1], "reduceScatter")));
}

Napi::Value comm_all_reduce_values(const Napi::CallbackInfo& info) {
  const char* fn = "allReduceValues";
  expect_count(info, 2, 2, fn);
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    fail(ErrorCode::Argument, fn, ": values must be a Float64Array");
  auto array = info[0].As<Napi::Float64Array>();
  auto values = std::make_shared<std::vector<double>>(array.Data(), array.Data() + array.ElementLength());
  ReduceOp op = read_op(info[1], fn);
  Communicator& comm = world();
  TurnPtr turn = comm.take_turn();
  return HostCollective::start(
      info.Env(), [&comm, turn, values, op] { *values = comm.all_reduce_values(turn, std::move(*values), op); },
      [values](Napi::Env env) -> Napi::Value {
        auto out = Napi::Float64Array::New(env, values->size());
        std::copy(values->begin(), values->end(), out.Data());
        return out;
      });
}

Napi::Value comm_all_gather_bytes(const Napi::CallbackInfo& info) {
  expect_count(info, 1, 1, "allGatherBytes");
  auto bytes = std::make_shared<std::vector<uint8_t>>(read_bytes(info[0], "allGatherBytes: bytes"));
  auto gathered = std::make_shared<std::vector<std::vector<uint8_t>>>();
  Communicator& comm = world();
  TurnPtr turn = comm.take_turn();
  return HostCollective::start(
      info.Env(), [&comm, turn, bytes, gathered] { *gathered = comm.all_gather_bytes(turn, *bytes); },
      [gathered](Napi::Env env) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, gathered->size());
        for (size_t r = 0; r < gathered->size(); ++r) out.Set(static_cast<uint32_t>(r), to_js(env, (*gathered)[r]));
        return out;
      });
}

Napi::Value comm_broadcast_bytes(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "broadcastBytes");
  Communicator& comm = world();
  int root = read_rank(info[1], "broadcastBytes: root");
  if (root >= comm.info().size)
    fail(ErrorCode::Argument, "broadcastBytes: root must be a rank in [0, ", comm.info().size, "), got ", root);
  auto bytes = std::make_shared<std::vector<uint8_t>>();
  if (root == comm.info().rank) *bytes = read_bytes(info[0], "broadcastBytes: bytes (on the root)");
  TurnPtr turn = comm.take_turn();
  return HostCollective::start(
      info.Env(), [&comm, turn, bytes, root] { *bytes = comm.broadcast_bytes(turn, std::move(*bytes), root); },
      [bytes](Napi::Env env) -> Napi::Value { return to_js(env, *bytes); });
}

Napi::Value comm_barrier(const Napi::CallbackInfo& info) {
  expect_count(info, 0, 0, "barrier");
  Communicator& comm = world();
  TurnPtr turn = comm.take_turn();
  return HostCollective::start(
      info.Env(), [&comm, turn] { comm.barrier(turn); }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

Napi::Value comm_abort(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "abort");
  std::string message = read_string(info[0], "abort: message");
  uint64_t code = read_index(info[1], "abort: exitCode");
  if (code < 1 || code > 255) fail(ErrorCode::Argument, "abort: exitCode must be an integer in [1, 255], got ", code);
  world().abort(message, static_cast<int>(code));
  return info.Env().Undefined();
}

}  // namespace

void register_collectives_ops(Napi::Env env, Napi::Object exports) {
  export_op<comm_world>(env, exports, "commWorld");
  export_op<comm_all_reduce>(env, exports, "commAllReduce");
  export_op<comm_all_reduce_start>(env, exports, "commAllReduceStart");
  export_op<comm_wait>(env, exports, "commWait");
  export_op<comm_broadcast>(env, exports, "commBroadcast");
  export_op<comm_all_gather>(env, exports, "commAllGather");
  export_op<comm_reduce_scatter>(env, exports, "commReduceScatter");
  export_op<comm_all_reduce_values>(env, exports, "commAllReduceValues");
  export_op<comm_all_gather_bytes>(env, exports, "commAllGatherBytes");
  export_op<comm_broadcast_bytes>(env, exports, "commBroadcastBytes");
  export_op<comm_barrier>(env, exports, "commBarrier");
  export_op<comm_abort>(env, exports, "commAbort");
}

}  // namespace r1v::bindings
