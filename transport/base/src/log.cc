#include "ramshift/base/log.h"

#include <atomic>
#include <cstdio>
#include <string>

namespace ramshift::log {
namespace {
std::atomic<Level> g_level{Level::kWarn};
const char* prefix(Level l) {
  switch (l) {
    case Level::kDebug:
      return "ramshift: debug: ";
    case Level::kInfo:
      return "ramshift: ";
    case Level::kWarn:
      return "ramshift: warning: ";
    default:
      return "ramshift: error: ";
  }
}
}  // namespace

void set_level(Level level) { g_level.store(level, std::memory_order_relaxed); }
Level level() { return g_level.load(std::memory_order_relaxed); }

void write(Level lvl, std::string_view line) {
  std::string out = prefix(lvl);
  out.append(line);
  out.push_back('\n');
  std::fwrite(out.data(), 1, out.size(), stderr);
}

}  // namespace ramshift::log
