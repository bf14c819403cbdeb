// Destination end of a migration: accepts one source on a listener, checks its hello and
// region table, prepares memory (or the output file), places pages from N data queues in
// parallel, checks the digest and commits. Returns a report whether it succeeded or not;
// on failure the output file is removed and the source is told why.
#pragma once

#include <chrono>

#include "ramshift/migration/config.h"
#include "ramshift/migration/progress.h"
#include "ramshift/migration/report.h"
#include "ramshift/transport/transport.h"

namespace ramshift::migration {

// Serves exactly one migration from `conn` (already accepted).
MigrationReport run_destination(std::unique_ptr<transport::Connection> conn,
                                const DestinationConfig& config, const ProgressFn& progress = {});

}  // namespace ramshift::migration
