#include "ramshift/base/log.h"

#include <atomic>
#include <cstdio>
#include <string>

namespace ramshift::log {
namespace {
std::atomic<Level> g_level{Level::kWarn};
std::atomic<Format> g_format{Format::kPlain};
// syslog priorities: 7 debug, 6 info, 4 warning, 3 error.
const char* priority(Level l) {
  switch (l) {
    case Level::kDebug:
      return "<7>";
    case Level::kInfo:
      return "<6>";
    case Level::kWarn:
      return "<4>";
    default:
      return "<3>";
  }
}
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

void set_format(Format format) { g_format.store(format, std::memory_order_relaxed); }
void set_level(Level level) { g_level.store(level, std::memory_order_relaxed); }
Level level() { return g_level.load(std::memory_order_relaxed); }

void write(Level lvl, std::string_view line) {
  std::string out;
  if (g_format.load(std::memory_order_relaxed) == Format::kJournal) out = priority(lvl);
  out += prefix(lvl);
  out.append(line);
  out.push_back('\n');
  std::fwrite(out.data(), 1, out.size(), stderr);
}

}  // namespace ramshift::log
