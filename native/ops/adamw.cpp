#include "adamw.h"

#include <cmath>
#include <string>
#include <unordered_map>

#include "../kernels/adamw.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

constexpr const char* kOp = "adamwStep";

void check_finite_at_least(const char* name, double value, double low) {
  if (!std::isfinite(value) || value < low)
    fail(ErrorCode::Argument, kOp, ": ", name, " must be a finite number ≥ ", low, ", got ", value);
}

void check_beta(const char* name, double value) {
  if (!(value >= 0 && value < 1)) fail(ErrorCode::Argument, kOp, ": ", name, " must be in [0, 1), got ", value);
}

void check_options(const AdamWOptions& o, const Tensor* ref) {
  check_finite_at_least("lr", o.lr, 0);
  check_beta("beta1", o.beta1);
  check_beta("beta2", o.beta2);
  if (!std::isfinite(o.eps) || !(o.eps > 0))
    fail(ErrorCode::Argument, kOp, ": eps must be a finite number > 0, got ", o.eps);
  check_finite_at_least("weightDecay", o.weight_decay, 0);
  if (!(o.step >= 1 && o.step <= 9007199254740991.0) || std::floor(o.step) != o.step)
    fail(ErrorCode::Argument, kOp, ": step must be an integer ≥ 1, got ", o.step);
  check_finite_at_least("gradScale", o.grad_scale, 0);
  if (o.grad_scale_tensor.defined()) {
    check_live(kOp, o.grad_scale_tensor, "gradScale");
    if (ref) check_same_engine(kOp, o.grad_scale_tensor, "gradScale", *ref, "groups[0].param");
    check_dtype(kOp, o.grad_scale_tensor, "gradScale", DType::F32);
    check_shape(kOp, o.grad_scale_tensor, "gradScale", {1});
  }
}

// An f32 state tensor of the group (m, v, master): live, same engine and shape as param.
void check_state(const Tensor& t, const std::string& name, const Tensor& param, const std::string& param_name,
                 const Tensor& ref) {
  check_live(kOp, t, name.c_str());
  check_same_engine(kOp, t, name.c_str(), ref, "groups[0].param");
  check_dtype(kOp, t, name.c_str(), DType::F32);
  if (t.shape() != param.shape())
    fail(ErrorCode::Shape, kOp, ": ", name, " has shape ", shape_str(t.shape()), " but ", param_name, " is ",
         shape_str(param.shape()));
}

void check_group(const AdamWGroup& g, size_t i, const Tensor& ref) {
  std::string at = concat("groups[", i, "].");
  std::string param = at + "param", grad = at + "grad";
  check_live(kOp, g.param, param.c_str());
  check_same_engine(kOp, g.param, param.c_str(), ref, "groups[0].param");
  check_compute_dtype(kOp, g.param, param.c_str());
  check_live(kOp, g.grad, grad.c_str());
  check_same_engine(kOp, g.grad, grad.c_str(), ref, "groups[0].param");
  check_same_dtype(kOp, g.grad, grad.c_str(), g.param, param.c_str());
  if (g.grad.shape() != g.param.shape())
    fail(ErrorCode::Shape, kOp, ": ", grad, " has shape ", shape_str(g.grad.shape()), " but ", param, " is ",
         shape_str(g.param.shape()));
  check_state(g.m, at + "m", g.param, param, ref);
  check_state(g.v, at + "v", g.param, param, ref);
  if (g.master.defined()) check_state(g.master, at + "master", g.param, param, ref);
  if (g.weight_decay) check_finite_at_least((at + "weightDecay").c_str(), *g.weight_decay, 0);
}

// Every tensor the step writes must be written once: no tensor may appear twice among the
// params, m, v and masters of all groups, nor be read as a grad.
void check_no_aliasing(const std::vector<AdamWGroup>& groups) {
  std::unordered_map<const void*, std::string> written;
  auto claim = [&](const Tensor& t, std::string name) {
    if (!t.defined() || t.numel() == 0) return;
    auto [it, fresh] = written.emplace(t.data(), name);
    if (!fresh) fail(ErrorCode::Argument, kOp, ": ", name, " is the same tensor as ", it->second);
  };
  for (size_t i = 0; i < groups.size(); ++i) {
    std::string at = concat("groups[", i, "].");
    claim(groups[i].param, at + "param");
    claim(groups[i].m, at + "m");
    claim(groups[i].v, at + "v");
    claim(groups[i].master, at + "master");
  }
  for (size_t i = 0; i < groups.size(); ++i) {
    const Tensor& grad = groups[i].grad;
    if (grad.numel() == 0) continue;
    auto it = written.find(grad.data());
    if (it != written.end()) fail(ErrorCode::Argument, kOp, ": groups[", i, "].grad is the same tensor as ", it->second);
  }
}

}  // namespace

void adamw_step(const std::vector<AdamWGroup>& groups, const AdamWOptions& options) {
  const Tensor* ref = groups.empty() ? nullptr : &groups[0].param;
  if (ref) check_live(kOp, *ref, "groups[0].param");
  check_options(options, ref);
  for (size_t i = 0; i < groups.size(); ++i) check_group(groups[i], i, *ref);
  check_no_aliasing(groups);
  if (groups.empty()) return;

  std::vector<Tensor> inputs, outputs;
  std::vector<AdamWTensors> tensors;
  for (const AdamWGroup& g : groups) {
    for (const Tensor* t : {&g.param, &g.grad, &g.m, &g.v, &g.master}) {
      if (t->defined()) inputs.push_back(*t);
    }
    for (const Tensor* t : {&g.param, &g.m, &g.v, &g.master}) {
      if (t->defined()) outputs.push_back(*t);
    }
    if (g.param.numel() == 0) continue;
    AdamWTensors a;
    a.dtype = g.param.dtype();
    a.param = g.param.data();
    a.grad = g.grad.data();
    a.m = static_cast<float*>(g.m.data());
    a.v = static_cast<float*>(g.v.data());
    a.master = g.master.defined() ? static_cast<float*>(g.master.data()) : nullptr;
    a.numel = g.param.numel();
    a.weight_decay = static_cast<float>(g.weight_decay.value_or(options.weight_decay));
    tensors.push_back(a);
  }
  const Tensor& scale = options.grad_scale_tensor;
  if (scale.defined()) inputs.push_back(scale);

  AdamWConstants c;
  c.lr = static_cast<float>(options.lr);
  c.beta1 = static_cast<float>(options.beta1);
  c.beta2 = static_cast<float>(options.beta2);
  c.eps = static_cast<float>(options.eps);
  c.one_minus_beta1 = static_cast<float>(1 - options.beta1);
  c.one_minus_beta2 = static_cast<float>(1 - options.beta2);
  c.step_size = static_cast<float>(options.lr / (1 - std::pow(options.beta1, options.step)));
  c.inv_sqrt_bc2 = static_cast<float>(1 / std::sqrt(1 - std::pow(options.beta2, options.step)));
  c.grad_scale = static_cast<float>(options.grad_scale);

  auto ctx = ref->context();
  enqueue_op(ctx, inputs, outputs, [tensors, c, scale, param0 = *ref]() mutable {
    if (tensors.empty()) return;
    const auto& ctx = param0.context();
    if (scale.defined()) c.grad_scale_tensor = static_cast<const float*>(scale.data());
    on_device(
        *ctx, kOp, [&] { cpu::adamw_step(tensors, c); },
        [&](Stream& s) {
          Tensor args =
              Tensor::empty(ctx, {(cuda::args_bytes(static_cast<int64_t>(tensors.size())) + 3) / 4}, DType::I32);
          cuda::adamw_step(tensors, c, args.data(), s.cuda_stream());
        });
  });
}

}  // namespace r1v
