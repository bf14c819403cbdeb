// `ramshift status|cancel|set-bandwidth|start-postcopy PATH` and the --control option of the
// long-running commands.
#include "control.h"

#include <fmt/format.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"

namespace ramshift::cli {
namespace {

using namespace std::chrono_literals;

// Sends one command; the `return` object, or the server's error as kInvalidArgument.
Result<nlohmann::json> call(const std::string& uri, const nlohmann::json& request) {
  RS_ASSIGN_OR_RETURN(std::string path, migration::control_socket_path(uri));
  RS_ASSIGN_OR_RETURN(std::string line, migration::control_call(path, request.dump(), 5s));
  auto reply = nlohmann::json::parse(line, nullptr, false);
  if (reply.is_discarded() || !reply.is_object())
    return Status(ErrorCode::kProtocol, fmt::format("control socket {}: not a JSON answer", path));
  if (reply.contains("error"))
    return Status(ErrorCode::kInvalidArgument, reply["error"].value("desc", "refused"));
  if (!reply.contains("return"))
    return Status(ErrorCode::kProtocol, fmt::format("control socket {}: no \"return\"", path));
  return reply["return"];
}

// "source: active, round 3, 412 MiB transferred, 3.1 MiB left in the round, ..."
std::string describe(const nlohmann::json& r) {
  auto num = [&](const char* k) { return r.value(k, 0.0); };
  std::string s = fmt::format("{}: {}", r.value("role", "?"), r.value("status", "?"));
  s += fmt::format(", round {}, {} transferred, {} left in the round, {} on the wire",
                   r.value("round", 0), format_bytes(r.value("transferred_bytes", uint64_t{0})),
                   format_bytes(r.value("remaining_bytes", uint64_t{0})),
                   format_bytes(r.value("wire_bytes", uint64_t{0})));
  if (num("dirty_rate_bytes_per_s") > 0)
    s += fmt::format(", dirtying {}", format_rate(num("dirty_rate_bytes_per_s")));
  if (num("expected_downtime_ms") > 0)
    s += fmt::format(", expected downtime {:.0f} ms", num("expected_downtime_ms"));
  s += fmt::format(", {} average", format_rate(num("throughput_bytes_per_s")));
  if (num("bandwidth_limit_bytes_per_s") > 0)
    s += fmt::format(", limit {}", format_rate(num("bandwidth_limit_bytes_per_s")));
  if (r.value("paused", false)) s += ", guest paused";
  s += fmt::format(", setup {:.0f} ms, {:.1f} s in", num("setup_ms"), num("total_ms") / 1000);
  return s;
}

}  // namespace

void add_control_option(CLI::App* cmd, std::string& uri) {
  cmd->add_option("--control", uri,
                  "serve status and control on unix:PATH while running (JSON lines: query, "
                  "cancel, set-bandwidth, start-postcopy, metrics; `ramshift status PATH`)");
}

Result<std::unique_ptr<migration::ControlServer>> start_control(
    const std::string& uri, const std::string& role, const migration::ProgressBoard& board,
    migration::CancelToken& token, std::function<Status(uint64_t)> set_bandwidth,
    std::function<Status()> start_postcopy) {
  if (uri.empty()) return std::unique_ptr<migration::ControlServer>();
  RS_ASSIGN_OR_RETURN(std::string path, migration::control_socket_path(uri));
  migration::ControlHandlers h;
  h.role = role;
  h.query = [&board] { return board.snapshot(); };
  h.cancel = [&token](const std::string& reason) {
    log::warn("{}: cancelling the migration", reason);
    token.request(reason);
  };
  h.set_bandwidth = std::move(set_bandwidth);
  h.start_postcopy = std::move(start_postcopy);
  auto server = migration::ControlServer::start(path, std::move(h));
  if (server) log::info("control socket at {}", path);
  return server;
}

Runner add_status(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<std::string>();
  auto* cmd =
      app.add_subcommand("status", "show a running migration's state from its --control socket");
  cmd->add_option("path", *path, "the socket: unix:PATH or PATH")->required();
  cmd->add_option("--json", *json, "write the answer as one JSON object to FILE ('-' = stdout)");
  return [path, json]() -> int {
    auto r = call(*path, {{"execute", "query"}});
    if (!r) return fail_with(r.status());
    if (*json != "-") fmt::print("{}\n", describe(*r));
    write_json_text(r->dump(), *json);
    return 0;
  };
}

Runner add_cancel(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "cancel",
      "cancel a running migration through its --control socket (as SIGINT would: the source "
      "keeps its guest, the destination removes its partial output)");
  cmd->add_option("path", *path, "the socket: unix:PATH or PATH")->required();
  return [path]() -> int {
    auto r = call(*path, {{"execute", "cancel"}});
    if (!r) return fail_with(r.status());
    return 0;
  };
}

Runner add_set_bandwidth(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto rate = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "set-bandwidth", "change a running send's --max-bandwidth through its --control socket");
  cmd->add_option("path", *path, "the socket: unix:PATH or PATH")->required();
  cmd->add_option("rate", *rate, "wire bytes per second, e.g. 100M (MiB/s) or 1Gbit; 0 = none")
      ->required();
  return [path, rate]() -> int {
    auto bps = parse_rate(*rate);
    if (!bps) return fail_with(bps.status());
    auto r =
        call(*path, {{"execute", "set-bandwidth"}, {"arguments", {{"bytes-per-second", *bps}}}});
    if (!r) return fail_with(r.status());
    return 0;
  };
}

Runner add_start_postcopy(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "start-postcopy",
      "switch a running `send --mode hybrid` to post-copy at the end of its current round "
      "(QMP's migrate-start-postcopy) through its --control socket");
  cmd->add_option("path", *path, "the socket: unix:PATH or PATH")->required();
  return [path]() -> int {
    auto r = call(*path, {{"execute", "start-postcopy"}});
    if (!r) return fail_with(r.status());
    return 0;
  };
}

}  // namespace ramshift::cli
