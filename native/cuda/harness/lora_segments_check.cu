// lora_segments harness: the LoRA term of many adapters over one batch against a float64 CPU reference
// (h rounded to bf16 where the kernel rounds it) on random odd sizes, mixed ranks in one call, gaps
// between segments (rows in no segment must keep their bits), bf16 and f32; the property serving relies
// on — a row's output is bitwise the same run alone as in a batch of others; the 16-byte and the scalar
// load paths give the same bits; the inline and the staged tables give the same bits; bad segments are
// refused; then decode timings with the adapter weights' bandwidth.
#include "harness.h"

using namespace hx;

namespace {

struct Adapter {
  int rank;
  float scale;
  std::vector<float> A, B;  // [rank, in], [out, rank], rounded to bf16 for bf16 runs
  Buf dA, dB;
};

Buf upload(const std::vector<float>& v, bool bf) { return bf ? up_bf16(v) : up(v); }
std::vector<float> download(const Buf& b, size_t n, bool bf) { return bf ? down_bf16(b.p, n) : down<float>(b.p, n); }

Adapter make_adapter(Rng& r, int rank, int64_t in, int64_t out, bool bf) {
  Adapter a;
  a.rank = rank;
  a.scale = r.uniform(0.25f, 2.f);
  a.A = randn(r, size_t(rank) * in, 1.f / std::sqrt(float(std::max<int64_t>(in, 1))), bf);
  a.B = randn(r, size_t(out) * rank, 1.f / std::sqrt(float(rank)), bf);
  a.dA = upload(a.A, bf);
  a.dB = upload(a.B, bf);
  return a;
}

struct Seg {
  int adapter, start, end;
};

// y0 plus every segment's term in float64, h rounded to bf16 as the kernel's bf16 h.
std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& y0, const std::vector<Adapter>& ads,
                              const std::vector<Seg>& segs, int64_t in, int64_t out, bool bf) {
  std::vector<double> y(y0.begin(), y0.end());
  for (const Seg& s : segs) {
    const Adapter& a = ads[s.adapter];
    for (int i = s.start; i < s.end; i++) {
      std::vector<double> h(a.rank);
      for (int j = 0; j < a.rank; j++) {
        double acc = 0;
        for (int64_t k = 0; k < in; k++) acc += double(x[size_t(i) * in + k]) * a.A[size_t(j) * in + k];
        h[j] = bf ? double(round_bf16(float(acc))) : acc;
      }
      for (int64_t o = 0; o < out; o++) {
        double acc = 0;
        for (int j = 0; j < a.rank; j++) acc += h[j] * a.B[size_t(o) * a.rank + j];
        y[size_t(i) * out + o] += double(a.scale) * acc;
      }
    }
  }
  return y;
}

std::vector<lkc::LoraSegment> descriptors(const std::vector<Adapter>& ads, const std::vector<Seg>& segs) {
  std::vector<lkc::LoraSegment> d;
  for (const Seg& s : segs) {
    const Adapter& a = ads[s.adapter];
    d.push_back({a.dA.p, a.dB.p, a.scale, a.rank, s.start, s.end});
  }
  return d;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void correctness() {
  Rng r(2024);
  const int ranks[] = {1, 5, 16, 64};
  for (bool bf : {true, false}) {
    const lkc::DType t = bf ? lkc::DType::BF16 : lkc::DType::F32;
    const size_t es = bf ? 2 : 4;
    // Up to 130 rows the segments and tiles go as a kernel parameter; 1500 rows make over 64 segments
    // and 128 tiles, which go through the staged copy (and each row alone through the parameter).
    for (int64_t N : {1, 7, 37, 130, 1500})
      for (int64_t in : {13, 64, 1000, 2048})
        for (int64_t out : {13, 64, 1000, 2048}) {
          if (N > 130 && (in > 64 || out > 64)) continue;
          const std::string tag = std::string(bf ? "bf16 " : "f32 ") + dims({N, in, out});
          // Four adapters, one of each rank; segments of random lengths with random gaps, cycling
          // through the adapters (an adapter may serve several segments).
          std::vector<Adapter> ads;
          for (int rank : ranks) ads.push_back(make_adapter(r, rank, in, out, bf));
          std::vector<Seg> segs;
          for (int row = r.below(2); row < N;) {
            const int len = 1 + r.below(int(std::min<int64_t>(N - row, 11)));
            segs.push_back({int(segs.size() % ads.size()), row, row + len});
            row += len + r.below(3);
          }
          const auto x = randn(r, size_t(N) * in, 1.f, bf);
          const auto y0 = randn(r, size_t(N) * out, 0.5f, bf);
          Buf dx = upload(x, bf), dy = upload(y0, bf);
          const auto desc = descriptors(ads, segs);
          lkc::lora_segments(dy.p, dx.p, t, desc.data(), int(desc.size()), N, in, out, nullptr);
          const auto got = download(dy, y0.size(), bf);
          check("lora_segments", tag + " segs=" + std::to_string(segs.size()), compare(got, reference(x, y0, ads, segs, in, out, bf)),
                bf ? 1e-2 : 1e-5);
          // Rows in no segment keep their bits.
          std::vector<bool> covered(N, false);
          for (const Seg& s : segs)
            for (int i = s.start; i < s.end; i++) covered[i] = true;
          bool untouched = true;
          for (int64_t i = 0; i < N; i++)
            if (!covered[i]) untouched &= std::memcmp(&got[i * out], &y0[i * out], out * sizeof(float)) == 0;
          expect("lora_segments", tag + ": rows in no segment unchanged", untouched);
          // Each row alone (a batch of one row, its adapter, y0's row): the same bits as in the batch.
          bool alone = true;
          const int step = N > 40 ? 7 : 1;
          for (const Seg& s : segs)
            for (int i = s.start; i < s.end; i += step) {
              const Adapter& a = ads[s.adapter];
              const lkc::LoraSegment one{a.dA.p, a.dB.p, a.scale, a.rank, 0, 1};
              Buf x1(in * es), y1(out * es);
              HX_CUDA(cudaMemcpy(x1.p, static_cast<const char*>(dx.p) + i * in * es, in * es, cudaMemcpyDeviceToDevice));
              const std::vector<float> y0row(y0.begin() + i * out, y0.begin() + (i + 1) * out);
              Buf y1init = upload(y0row, bf);
              HX_CUDA(cudaMemcpy(y1.p, y1init.p, out * es, cudaMemcpyDeviceToDevice));
              lkc::lora_segments(y1.p, x1.p, t, &one, 1, 1, in, out, nullptr);
              const auto g1 = download(y1, out, bf);
              alone &= std::memcmp(g1.data(), &got[i * out], out * sizeof(float)) == 0;
            }
          expect("lora_segments", tag + ": a row alone gives its batch bits", alone);
        }
    // The scalar load path (factors and x one element off 16-byte alignment) gives the vector path's bits.
    {
      const int64_t N = 9, in = 1000, out = 1000;
      std::vector<Adapter> ads;
      ads.push_back(make_adapter(r, 16, in, out, bf));
      const auto x = randn(r, size_t(N) * in, 1.f, bf);
      const auto y0 = randn(r, size_t(N) * out, 0.5f, bf);
      const std::vector<Seg> segs{{0, 0, int(N)}};
      Buf dx = upload(x, bf), dy = upload(y0, bf);
      auto desc = descriptors(ads, segs);
      lkc::lora_segments(dy.p, dx.p, t, desc.data(), 1, N, in, out, nullptr);
      const auto aligned = download(dy, y0.size(), bf);
      auto shifted = [&](const Buf& src, size_t n) {
        Buf b((n + 1) * es);
        HX_CUDA(cudaMemcpy(static_cast<char*>(b.p) + es, src.p, n * es, cudaMemcpyDeviceToDevice));
        return b;
      };
      Buf sx = shifted(dx, x.size()), sA = shifted(ads[0].dA, ads[0].A.size()), sB = shifted(ads[0].dB, ads[0].B.size());
      Buf dy2 = upload(y0, bf);
      desc[0].A = static_cast<char*>(sA.p) + es;
      desc[0].B = static_cast<char*>(sB.p) + es;
      lkc::lora_segments(dy2.p, static_cast<char*>(sx.p) + es, t, desc.data(), 1, N, in, out, nullptr);
      expect("lora_segments", std::string(bf ? "bf16" : "f32") + ": scalar loads give the 16-byte path's bits",
             same_bits(download(dy2, y0.size(), bf), aligned));
    }
  }
  // Refusals: overlapping segments, rows out of range, a rank out of range.
  Buf dummy(64);
  const lkc::LoraSegment ok{dummy.p, dummy.p, 1.f, 4, 0, 2};
  expect_throw("lora_segments", "overlapping segments", [&] {
    const lkc::LoraSegment s[2] = {ok, {dummy.p, dummy.p, 1.f, 4, 1, 3}};
    lkc::lora_segments(dummy.p, dummy.p, lkc::DType::BF16, s, 2, 4, 1, 1, nullptr);
  });
  expect_throw("lora_segments", "a segment past the last row", [&] {
    const lkc::LoraSegment s{dummy.p, dummy.p, 1.f, 4, 2, 5};
    lkc::lora_segments(dummy.p, dummy.p, lkc::DType::BF16, &s, 1, 4, 1, 1, nullptr);
  });
  expect_throw("lora_segments", "rank 0", [&] {
    const lkc::LoraSegment s{dummy.p, dummy.p, 1.f, 0, 0, 1};
    lkc::lora_segments(dummy.p, dummy.p, lkc::DType::BF16, &s, 1, 4, 1, 1, nullptr);
  });
}

// Decode: N rows of bf16 activations, `segments` adapters of rank r, in = out = 4096.
void time_decode(int N, int segments, int rank) {
  const int64_t in = 4096, out = 4096;
  std::vector<Buf> As, Bs;
  std::vector<lkc::LoraSegment> desc;
  const int per = N / segments;
  for (int g = 0; g < segments; g++) {
    As.push_back(rand_bf16(int64_t(rank) * in, 100 + g, 0.02f));
    Bs.push_back(rand_bf16(out * rank, 200 + g, 0.02f));
    desc.push_back({As.back().p, Bs.back().p, 2.f, rank, g * per, (g + 1) * per});
  }
  Buf x = rand_bf16(int64_t(N) * in, 7), y = rand_bf16(int64_t(N) * out, 8);
  const double us =
      time_us([&] { lkc::lora_segments(y.p, x.p, lkc::DType::BF16, desc.data(), segments, N, in, out, nullptr); }, 10, 200);
  const double weights = double(segments) * (double(rank) * in + double(out) * rank) * 2.0;
  timing("lora_segments bf16", "N=" + std::to_string(N) + " segs=" + std::to_string(segments) + " r=" + std::to_string(rank) + " 4096x4096",
         us, gbps(weights, us) + " of adapter weights");
}

}  // namespace

int main() {
  return run("lora_segments", [] {
    correctness();
    if (!quick()) {
      time_decode(1, 1, 16);
      time_decode(64, 64, 16);
      time_decode(64, 8, 16);
      time_decode(1024, 8, 16);  // 128 tiles: the largest table that goes as a kernel parameter
      time_decode(2048, 8, 16);  // 256 tiles: the staged copy
    }
  });
}
