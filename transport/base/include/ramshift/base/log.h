// Minimal leveled logging to stderr on top of fmt.
//
// Why not spdlog: ramshift logs a handful of lines per migration (never per page), so a
// formatted write to stderr is all that is needed; fmt already does the hard part.
// Thread-safe: each line is formatted first and written with one fwrite.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace ramshift::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

// Lines below this level are dropped. Default kWarn; the CLI raises it with -v / lowers with -q.
void set_level(Level level);
Level level();
// kPlain: "ramshift: warning: ..." (a terminal, a file). kJournal: the same line led by its
// syslog priority, "<4>ramshift: warning: ...", which journald reads as the entry's priority
// (sd-daemon(3)); journald adds the timestamp.
enum class Format { kPlain, kJournal };
void set_format(Format format);
void write(Level level, std::string_view line);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::kDebug) write(Level::kDebug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::kInfo) write(Level::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::kWarn) write(Level::kWarn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::kError) write(Level::kError, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ramshift::log
