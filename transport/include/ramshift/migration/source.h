// Source end of a migration: connects, describes the guest, streams its pages over N data
// queues through the page pipeline, sends the digest, and waits for the destination's
// commit. Never changes the guest. Returns a report whether it succeeded or not.
#pragma once

#include "ramshift/guest/guest.h"
#include "ramshift/migration/config.h"
#include "ramshift/migration/progress.h"
#include "ramshift/migration/report.h"

namespace ramshift::migration {

MigrationReport run_source(const guest::SourceGuest& guest, const SourceConfig& config,
                           const ProgressFn& progress = {});

}  // namespace ramshift::migration
