// Where and when a report was made: every JSON report carries it, so a file found later (or
// a pair of them from two hosts) says which build wrote it, on which host, and when.
#pragma once

#include <string>

namespace ramshift {

struct Provenance {
  std::string version;     // "ramshift 0.x.y"
  std::string host;        // this host's name
  std::string started_at;  // UTC, ISO 8601 with milliseconds: "2026-12-06T05:31:10.123Z"
};

// `elapsed_ms` ago is when the work began (a report is written at its end).
Provenance provenance(double elapsed_ms);

}  // namespace ramshift
