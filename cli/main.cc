// ramshift: the command-line entry point. Parses options with CLI11 and dispatches.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>

#include "commands.h"
#include "control.h"
#include "daemon.h"
#include "profile.h"
#include "ramshift/base/log.h"
#include "ramshift/base/version.h"

int main(int argc, char** argv) {
  // A peer that disappears must surface as an error from send(), not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"ramshift: RDMA-accelerated live migration transport and engine"};
  app.require_subcommand(1);
  app.set_version_flag("--version", ramshift::kSoftware);
  int verbose = 0;
  bool quiet = false;
  app.add_flag("-v,--verbose", verbose,
               "log what happens, step by step; -vv also each --codec auto window");
  app.add_flag("-q,--quiet", quiet, "only errors; no progress bar or summary");
  // The global flags work after the subcommand too (`ramshift send ... -v`), where people put
  // them. Set before the subcommands are added: each inherits it, nested ones included.
  app.fallthrough();
  // CLI11's own parse errors read like every other error of this program.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return fmt::format("ramshift: error: {}\nramshift: run with --help for the options\n",
                       e.what());
  });
  auto send = ramshift::cli::add_send(app);
  auto receive = ramshift::cli::add_receive(app);
  auto demo = ramshift::cli::add_demo(app);
  auto make_image = ramshift::cli::add_make_image(app);
  auto bench = ramshift::cli::add_bench(app);
  auto tune = ramshift::cli::add_tune(app);
  auto doctor = ramshift::cli::add_doctor(app);
  auto status = ramshift::cli::add_status(app);
  auto cancel = ramshift::cli::add_cancel(app);
  auto set_bandwidth = ramshift::cli::add_set_bandwidth(app);
  auto start_postcopy = ramshift::cli::add_start_postcopy(app);
  for (const char* name : {"send", "receive"})
    ramshift::cli::add_profile_option(app.get_subcommand(name));
#ifdef RAMSHIFT_HAVE_QEMU_BRIDGE
  auto qemu_bridge = ramshift::cli::add_qemu_bridge(app);
  auto qemu_migrate = ramshift::cli::add_qemu_migrate(app);
  for (const char* name : {"source", "dest"})
    ramshift::cli::add_profile_option(app.get_subcommand("qemu-bridge")->get_subcommand(name));
#endif
#ifdef RAMSHIFT_HAVE_QEMU_PRELOAD
  auto qemu_exec = ramshift::cli::add_qemu_exec(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  ramshift::log::set_level(verbose >= 2 ? ramshift::log::Level::kDebug
                           : verbose    ? ramshift::log::Level::kInfo
                           : quiet      ? ramshift::log::Level::kError
                                        : ramshift::log::Level::kWarn);
  ramshift::cli::use_journal_format_under_journald();
  // A profile fills the options the command line left out, on the command that runs.
  CLI::App* chosen = app.get_subcommands().front();
  while (!chosen->get_subcommands().empty()) chosen = chosen->get_subcommands().front();
  if (ramshift::Status s = ramshift::cli::apply_profile(chosen); !s) {
    std::fprintf(stderr, "ramshift: error: %s\n", s.message().c_str());
    return 2;
  }
  if (app.got_subcommand("send")) return send();
  if (app.got_subcommand("receive")) return receive();
  if (app.got_subcommand("demo")) return demo();
  if (app.got_subcommand("make-image")) return make_image();
  if (app.got_subcommand("bench")) return bench();
  if (app.got_subcommand("tune")) return tune();
  if (app.got_subcommand("doctor")) return doctor();
  if (app.got_subcommand("status")) return status();
  if (app.got_subcommand("cancel")) return cancel();
  if (app.got_subcommand("set-bandwidth")) return set_bandwidth();
  if (app.got_subcommand("start-postcopy")) return start_postcopy();
#ifdef RAMSHIFT_HAVE_QEMU_BRIDGE
  if (app.got_subcommand("qemu-bridge")) return qemu_bridge();
  if (app.got_subcommand("qemu-migrate")) return qemu_migrate();
#endif
#ifdef RAMSHIFT_HAVE_QEMU_PRELOAD
  if (app.got_subcommand("qemu-exec")) return qemu_exec();
#endif
  return 2;
}
