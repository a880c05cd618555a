// Threading for CPU kernels: an OpenMP thread pool (threads persist between kernels).
// parallel_for splits [0, n) into contiguous chunks, one per thread; kernels pass a grain so that
// tiny loops stay on the calling thread.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace lk {

inline int num_threads() { return omp_get_max_threads(); }
inline void set_num_threads(int n) { omp_set_num_threads(n > 0 ? n : omp_get_num_procs()); }

// fn(begin, end) over chunks of [0, n); runs inline when n < 2 * grain.
template <typename Fn>
void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  int threads = num_threads();
  if (threads <= 1 || n < 2 * grain) {
    fn(int64_t(0), n);
    return;
  }
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / grain);
#pragma omp parallel for num_threads(chunks) schedule(static, 1)
  for (int64_t c = 0; c < chunks; c++) {
    int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    if (b < e) fn(b, e);
  }
}

}  // namespace lk
