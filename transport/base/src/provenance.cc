#include "ramshift/base/provenance.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <ctime>

#include "ramshift/base/version.h"

namespace ramshift {

Provenance provenance(double elapsed_ms) {
  Provenance p;
  p.version = kSoftware;
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) == 0) p.host = name;
  using namespace std::chrono;
  const auto start = system_clock::now() - duration_cast<system_clock::duration>(
                                               duration<double, std::milli>(elapsed_ms));
  const std::time_t secs = system_clock::to_time_t(start);
  const auto ms = duration_cast<milliseconds>(start.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&secs, &utc);
  p.started_at = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900,
                             utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, ms);
  return p;
}

}  // namespace ramshift
