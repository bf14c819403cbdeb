// A migration between two ends on this host, both driven from here: `ramshift demo`, and a
// quick end-to-end check for anyone embedding the library. The source runs in this process;
// the destination runs either in a thread of this process (over loopback://) or in a
// receiver process (tcp://, rdma://: the pages really cross a socket or a NIC, into another
// process's memory). Both ends' reports are collected and the outcome verified: a live
// guest must have resumed on the destination and verified every page there; an image may
// also be compared with its copy byte for byte, independently of the migration's digest.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/guest/guest.h"
#include "ramshift/migration/config.h"
#include "ramshift/migration/progress.h"
#include "ramshift/migration/report.h"
#include "ramshift/transport/uri.h"

namespace ramshift::migration {

// A destination in another process: a program that listens, prints "listening on URI" as
// the first line of its standard output, serves one migration, writes its report as JSON
// (MigrationReport::to_json) to `report_path` and exits with 0 when the migration
// completed. `ramshift -q receive --listen URI --once --json FILE` is one.
struct ReceiverProcess {
  std::vector<std::string> argv;  // argv[0] is the program's path
  std::string report_path;
};

struct LocalPairConfig {
  SourceConfig source;  // `to` is ignored: the pair sets it to where the destination listens
  // Set: the destination is this process. Unset: a thread of this process serves
  // `destination` over `in_process_uri`.
  std::optional<ReceiverProcess> receiver_process;
  DestinationConfig destination;
  std::string in_process_uri = "loopback://local-pair";
  // An image migration: once it has succeeded, these two files are compared byte for byte.
  struct ImagePair {
    std::string source_path, destination_path;
  };
  std::optional<ImagePair> compare_images;
};

// Where the destination came up, reported before the source starts.
struct ReceiverStarted {
  int pid = 0;  // the receiver process; 0 = a thread of this process
  transport::Uri uri;
};

struct LocalPairReport {
  MigrationReport source;
  // The destination's report: all of it from a thread; from a receiver process what its
  // JSON says of status, role, verified, total_ms, resumed and error (the rest is in its
  // file). Default (not completed) when the receiver never wrote one.
  MigrationReport destination;
  // The receiver process's exit code (128 + signal when killed); a thread: 0 when its
  // migration completed, else 1.
  int receiver_exit = 0;
  // The guest was live (not an immutable image): it must have resumed on the destination
  // and verified every page there (destination.resumed_verified).
  bool live_guest = false;
  std::optional<bool> images_identical;  // compare_images, only after a good migration
  Status image_check;                    // why the images could not be compared, else ok

  // The migration completed on both ends and a live guest verified on the destination.
  bool migrated() const {
    return source.completed && receiver_exit == 0 &&
           (!live_guest || destination.resumed_verified.value_or(false));
  }
  // migrated(), and the images (when compared) are identical.
  bool verified() const { return migrated() && image_check && images_identical.value_or(true); }
};

using ReceiverStartedFn = std::function<void(const ReceiverStarted&)>;

// Starts the destination, migrates `guest` to it with `progress` (the source's), waits for
// the destination's end and verifies. An error means the destination could not be started
// (nothing was migrated); every later failure is in the report. A receiver process that is
// still waiting 10 s after the source failed is stopped (SIGTERM).
Result<LocalPairReport> run_local_pair(guest::SourceGuest& guest, const LocalPairConfig& config,
                                       const ReceiverStartedFn& on_receiver_started = {},
                                       const ProgressFn& progress = {});

}  // namespace ramshift::migration
