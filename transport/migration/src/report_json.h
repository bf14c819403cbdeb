// JSON pieces the report and the control socket's `query` share (keys in docs/user-guide.md).
#pragma once

#include <nlohmann/json.hpp>

#include "ramshift/migration/report.h"

namespace ramshift::migration {

// `downtime_detail`: the source's parts (they add up to downtime_ms), or the destination's
// resume_ms.
nlohmann::ordered_json downtime_detail_json(const DowntimeDetail& d, bool source);

}  // namespace ramshift::migration
