#include "test_hooks.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>

#include "ramshift/base/log.h"

namespace ramshift::migration {

void test_hold(std::string_view phase) {
  const char* knob = std::getenv(kTestHoldAtEnv);
  if (!knob) return;
  const std::string_view spec(knob);
  const size_t colon = spec.find(':');
  if (spec.substr(0, colon) != phase) return;
  double seconds = 3;
  uint64_t times = UINT64_MAX;
  if (colon != std::string_view::npos) {
    const std::string text(spec.substr(colon + 1));
    char* end = nullptr;
    seconds = std::strtod(text.c_str(), &end);
    if (*end == ':') times = std::strtoull(end + 1, &end, 10);
    if (*end != '\0' || seconds < 0) {  // malformed: the defaults, never a silent no-hold
      seconds = 3;
      times = UINT64_MAX;
    }
  }
  static std::atomic<uint64_t> held{0};  // the knob names one phase per process
  if (held.fetch_add(1) >= times) return;
  log::warn("test: holding at {} for {} s ({} is set)", phase, seconds, kTestHoldAtEnv);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

wire::Hello test_protocol_version(wire::Hello hello) {
  const char* knob = std::getenv(kTestProtocolVersionEnv);
  if (!knob || !*knob) return hello;
  char* end = nullptr;
  const unsigned long version = std::strtoul(knob, &end, 10);
  if (*end != '\0' || version > UINT16_MAX) return hello;
  log::warn("test: announcing protocol {} instead of {} ({} is set)", version,
            wire::kProtocolVersion, kTestProtocolVersionEnv);
  hello.version_min = hello.version_max = static_cast<uint16_t>(version);
  return hello;
}

}  // namespace ramshift::migration
