// The 4-bit code tables as the harnesses' references use them: native/cpu/quant.cc's kNF4d / kFP4d,
// rounded to fp32 as the CPU backend does.
#pragma once

namespace hx {

inline float code_value(int code, int i) {
  static const double kNF4d[16] = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                                   -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                                   0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                                   0.7229568362236023, 1.0};
  static const double kFP4d[16] = {0.0, 0.0052083334885537624, 0.6666666865348816, 1.0, 0.3333333432674408, 0.5, 0.1666666716337204,
                                   0.25, 0.0, -0.0052083334885537624, -0.6666666865348816, -1.0, -0.3333333432674408, -0.5,
                                   -0.1666666716337204, -0.25};
  return static_cast<float>(code == 0 ? kNF4d[i] : kFP4d[i]);
}

}  // namespace hx
