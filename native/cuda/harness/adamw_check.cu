// AdamW harness: three steps with weight decay and a device-side clip coefficient, against the same
// sequence of fp32 operations on the CPU (torch's order), plus the bf16 copy; the multi-tensor step
// against the single one, bit for bit; bandwidth on 64 Mi params, and 448 LoRA-sized tensors at once.
#include "harness.h"

using namespace hx;

namespace {

void correctness() {
  Rng r(71);
  for (int64_t n : {1, 7, 33, 127, 100003}) {
    const std::string tag = "n=" + std::to_string(n);
    auto p = randn(r, n, 0.1f, false);
    std::vector<float> m(n, 0.f), v(n, 0.f);
    Buf dp = up(p), dm = up(m), dv = up(v), pb(n * 2), coef = up(std::vector<float>{0.8f});
    const float lr = 2e-4f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    for (int step = 1; step <= 3; step++) {
      auto g = randn(r, n, 1.f, false);
      Buf dg = up(g);
      pb.poison();
      lkc::adamw_step(dp.f(), dm.f(), dv.f(), pb.bf(), dg.f(), coef.f(), n, lr, b1, b2, eps, wd, step, nullptr);
      const float decay = float(1.0 - double(lr) * double(wd)), w1 = float(1.0 - double(b1)), fb2 = b2, w2 = float(1.0 - double(b2));
      const float bc2 = float(std::sqrt(1.0 - std::pow(double(b2), step)));
      const float ns = float(-(double(lr) / (1.0 - std::pow(double(b1), step))));
      for (int64_t i = 0; i < n; i++) {
        const float gi = g[i] * 0.8f;
        float pi = p[i] * decay;
        m[i] = m[i] + w1 * (gi - m[i]);
        v[i] = v[i] * fb2 + w2 * (gi * gi);
        p[i] = pi + ns * (m[i] / (std::sqrt(v[i]) / bc2 + eps));
      }
    }
    std::vector<double> pr(p.begin(), p.end()), mr(m.begin(), m.end()), vr(v.begin(), v.end()), pbr(n);
    for (int64_t i = 0; i < n; i++) pbr[i] = round_bf16(p[i]);
    check("adamw p", tag, compare(down<float>(dp.p, n), pr), 1e-6);
    check("adamw m", tag, compare(down<float>(dm.p, n), mr), 1e-6);
    check("adamw v", tag, compare(down<float>(dv.p, n), vr), 1e-6);
    check("adamw p bf16 copy", tag, compare(down_bf16(pb.p, n), pbr), 1e-6);
  }
  // Many tensors in one call (more than one launch's batch, odd sizes, one misaligned start) give
  // exactly what one call per tensor gives.
  {
    const int count = lkc::kAdamwBatch + 9;
    std::vector<int64_t> sizes(count);
    for (int i = 0; i < count; i++) sizes[i] = 1 + (int64_t(i) * 7919) % 3001;
    std::vector<Buf> ps, ms, vs, gs, pbs, ps1, ms1, vs1, pbs1;
    std::vector<lkc::AdamwTensor> table;
    for (int i = 0; i < count; i++) {
      const int64_t n = sizes[i];
      const auto p = randn(r, n + 1, 0.1f, false), g = randn(r, n + 1, 1.f, false);
      const std::vector<float> zero(n + 1, 0.f);
      ps.push_back(up(p)), ms.push_back(up(zero)), vs.push_back(up(zero)), gs.push_back(up(g)), pbs.emplace_back((n + 1) * 2);
      ps1.push_back(up(p)), ms1.push_back(up(zero)), vs1.push_back(up(zero)), pbs1.emplace_back((n + 1) * 2);
      const int o = i == 3 ? 1 : 0;  // tensor 3 starts one element in: the scalar path
      table.push_back({ps[i].f() + o, ms[i].f() + o, vs[i].f() + o, pbs[i].bf() + o, gs[i].f() + o, n});
    }
    for (int step = 1; step <= 2; step++) {
      lkc::adamw_step_multi(table.data(), count, nullptr, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step, nullptr);
      for (int i = 0; i < count; i++) {
        const int o = i == 3 ? 1 : 0;
        lkc::adamw_step(ps1[i].f() + o, ms1[i].f() + o, vs1[i].f() + o, pbs1[i].bf() + o, gs[i].f() + o, nullptr, sizes[i], 1e-3f,
                        0.9f, 0.999f, 1e-8f, 0.01f, step, nullptr);
      }
    }
    double worst = 0;
    for (int i = 0; i < count; i++) {
      const int64_t n = sizes[i] + 1;
      const auto a = down<float>(ps[i].p, n), b = down<float>(ps1[i].p, n);
      const auto c = down_bf16(pbs[i].p, n), d = down_bf16(pbs1[i].p, n);
      for (int64_t j = 0; j < n; j++) worst = std::max({worst, std::abs(double(a[j]) - double(b[j])), std::abs(double(c[j]) - double(d[j]))});
    }
    expect("adamw multi-tensor", std::to_string(count) + " tensors equal one call each, bit for bit", worst == 0.0);
  }
  expect_throw("adamw", "step 0", [] {
    lkc::adamw_step(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 4, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.f, 0, nullptr);
  });
}

void timings() {
  const int64_t n = int64_t(64) << 20;
  Buf p(n * 4), m(n * 4), v(n * 4), g(n * 4), pb(n * 2);
  lkc::fill(p.p, lkc::DType::F32, 0.5f, n, nullptr), lkc::fill(g.p, lkc::DType::F32, 0.01f, n, nullptr);
  m.zero(), v.zero();
  const double us = time_us([&] { lkc::adamw_step(p.f(), m.f(), v.f(), pb.bf(), g.f(), nullptr, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 5, nullptr); });
  timing("adamw step (+bf16 copy)", "64Mi params", us, gbps(30.0 * n, us));
  // The 8B LoRA shape: 448 factors of 16 × 4096 … 14336, one call.
  const int count = 448;
  std::vector<lkc::AdamwTensor> table;
  int64_t total = 0;
  for (int i = 0; i < count; i++) {
    const int64_t sz = 16 * ((i % 7) < 4 ? 4096 : 14336);
    table.push_back({p.f() + total, m.f() + total, v.f() + total, pb.bf() + total, g.f() + total, sz});
    total += sz;
  }
  const double us2 = time_us([&] { lkc::adamw_step_multi(table.data(), count, nullptr, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 5, nullptr); });
  timing("adamw multi-tensor (+bf16 copy)", "448 LoRA factors, " + std::to_string(total >> 20) + "Mi params", us2, gbps(30.0 * total, us2));
}

}  // namespace

int main() {
  return run("adamw", [] {
    correctness();
    if (!quick()) timings();
  });
}
