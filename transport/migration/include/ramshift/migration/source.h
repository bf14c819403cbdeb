// Source end of a migration: connects, describes the guest, streams its pages over N data
// queues through the page pipeline, sends the digest, and waits for the destination's
// commit. A live guest is copied in pre-copy rounds under the convergence policy, then
// paused for the final round; if anything fails before the destination's commit, the guest
// is resumed here, unchanged. Returns a report whether it succeeded or not.
#pragma once

#include "ramshift/guest/guest.h"
#include "ramshift/migration/config.h"
#include "ramshift/migration/progress.h"
#include "ramshift/migration/report.h"

namespace ramshift::migration {

MigrationReport run_source(guest::SourceGuest& guest, const SourceConfig& config,
                           const ProgressFn& progress = {});

}  // namespace ramshift::migration
