#include "ramshift/base/cpu_affinity.h"

#include <fmt/format.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "ramshift/base/log.h"

namespace ramshift {
namespace {

cpu_set_t allowed_set() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) CPU_SET(0, &set);
  return set;
}

Result<uint32_t> cpu_number(std::string_view s, std::string_view text, std::string_view flag) {
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v >= CPU_SETSIZE)
    return Status(
        ErrorCode::kInvalidArgument,
        fmt::format("--{} {}: '{}' is not a CPU number (a list is like 0-3,8)", flag, text, s));
  return v;
}

}  // namespace

Result<std::vector<uint32_t>> parse_cpu_list(std::string_view text, std::string_view flag) {
  std::vector<uint32_t> cpus;
  const cpu_set_t allowed = allowed_set();
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string_view item =
        text.substr(pos, comma == std::string_view::npos ? text.npos : comma - pos);
    size_t dash = item.find('-');
    RS_ASSIGN_OR_RETURN(uint32_t first, cpu_number(item.substr(0, dash), text, flag));
    uint32_t last = first;
    if (dash != std::string_view::npos) {
      RS_ASSIGN_OR_RETURN(last, cpu_number(item.substr(dash + 1), text, flag));
    }
    if (last < first)
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("--{} {}: range {} runs backwards", flag, text, item));
    for (uint32_t c = first; c <= last; ++c) {
      if (!CPU_ISSET(c, &allowed))
        return Status(ErrorCode::kInvalidArgument,
                      fmt::format("--{} {}: CPU {} is not available to this process (it may "
                                  "use {})",
                                  flag, text, c, allowed_cpu_list()));
      cpus.push_back(c);
    }
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::string allowed_cpu_list() {
  const cpu_set_t set = allowed_set();
  std::string out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set)) continue;
    int last = c;
    while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, &set)) ++last;
    if (!out.empty()) out += ',';
    out += last == c ? fmt::format("{}", c) : fmt::format("{}-{}", c, last);
    c = last;
  }
  return out;
}

void pin_queue_thread(std::span<const uint32_t> cpus, uint32_t queue) {
  if (cpus.empty()) return;
  const uint32_t cpu = cpus[queue % cpus.size()];
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set); err != 0)
    log::warn("queue {}: cannot pin to CPU {}: {}; it runs unpinned", queue, cpu, strerror(err));
  // Names are at most 15 characters: "rs-queue-" leaves room for queue numbers to 999999.
  pthread_setname_np(pthread_self(), fmt::format("rs-queue-{}", queue).c_str());
}

}  // namespace ramshift
