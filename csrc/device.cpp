// Run-time CUDA availability for CPU-only builds (the CUDA build defines it in cuda/device.cu).
#include "kernels.h"

namespace wallwm {
#ifndef WALLWM_WITH_CUDA
int cuda_device_count() { return 0; }
#endif
}  // namespace wallwm
