// Tuning profiles: a JSON file, written by `ramshift tune --profile-out`, whose "options" map
// command-line option names (without "--") to values, e.g. {"queues": 4, "codec": "zstd",
// "rdma-sq-depth": 256}. `--profile FILE` on send, receive, bench and qemu-bridge applies
// the options that command has; options given on the command line win, and options the
// command does not have are skipped (a profile serves every command). "cpus" (the queue
// threads' CPUs tune chose) belongs to the sending host: `receive` skips it.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "ramshift/base/status.h"

namespace ramshift::cli {

inline constexpr int kProfileVersion = 1;

// Registers `--profile FILE` on `cmd`.
void add_profile_option(CLI::App* cmd);

// After parsing: applies the profile named by `cmd`'s --profile, if any. kInvalidArgument
// (exit 2) for a file that cannot be read, is not a profile, or holds a value the option
// refuses, naming the file and the option.
Status apply_profile(CLI::App* cmd);

}  // namespace ramshift::cli
