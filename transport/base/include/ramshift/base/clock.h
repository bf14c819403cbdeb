// Elapsed time, as the logs and reports print it.
#pragma once

#include <chrono>

namespace ramshift {

// Milliseconds since `t` on the steady clock.
inline double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace ramshift
