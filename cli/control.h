// `--control unix:PATH` for the long-running commands, and the `status`, `cancel`,
// `set-bandwidth` and `start-postcopy` commands that talk to it (the protocol:
// ramshift/migration/control_server.h).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>

#include "ramshift/migration/cancel.h"
#include "ramshift/migration/control_server.h"

namespace ramshift::cli {

// Registers --control on `cmd`, into `uri`.
void add_control_option(CLI::App* cmd, std::string& uri);

// Starts the control socket named by `uri` (none when `uri` is empty: a null server):
// `query` reads `board`, `cancel` asks `token`, `set-bandwidth` calls `set_bandwidth` (null:
// refused with the reason), `start-postcopy` calls `start_postcopy` (null: refused). Declare
// the result after what it uses: it is destroyed first.
Result<std::unique_ptr<migration::ControlServer>> start_control(
    const std::string& uri, const std::string& role, const migration::ProgressBoard& board,
    migration::CancelToken& token, std::function<Status(uint64_t)> set_bandwidth = {},
    std::function<Status()> start_postcopy = {});

using Runner = std::function<int()>;
Runner add_status(CLI::App& app);
Runner add_cancel(CLI::App& app);
Runner add_set_bandwidth(CLI::App& app);
Runner add_start_postcopy(CLI::App& app);

}  // namespace ramshift::cli
