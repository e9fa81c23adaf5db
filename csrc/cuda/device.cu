// Run-time CUDA availability: cudaGetDeviceCount failing (no driver, no device) means "no GPU", never a crash.
// cudart is linked statically (CMakeLists.txt), so the module imports on machines without a driver.
#include <cuda_runtime.h>

#include "kernels.h"

namespace wallwm {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return n;
}

}  // namespace wallwm
