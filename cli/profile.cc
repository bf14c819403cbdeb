#include "profile.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "ramshift/base/log.h"

namespace ramshift::cli {

void add_profile_option(CLI::App* cmd) {
  cmd->add_option("--profile",
                  "settings from `ramshift tune --profile-out FILE`; "
                  "options given here win")
      ->type_name("FILE");
}

Status apply_profile(CLI::App* cmd) {
  CLI::Option* opt = cmd->get_option_no_throw("--profile");
  if (!opt || opt->count() == 0) return Status::ok();
  const std::string path = opt->as<std::string>();
  auto bad = [&](const std::string& why) {
    return Status(ErrorCode::kInvalidArgument, fmt::format("--profile {}: {}", path, why));
  };
  std::ifstream in(path);
  if (!in) return bad("cannot be read");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("is not JSON");
  if (!j.contains("ramshift_profile") || j["ramshift_profile"] != kProfileVersion ||
      !j.contains("options") || !j["options"].is_object())
    return bad(fmt::format("is not a ramshift profile (version {} with an \"options\" object)",
                           kProfileVersion));
  for (const auto& [key, value] : j["options"].items()) {
    CLI::Option* o = cmd->get_option_no_throw("--" + key);
    if (!o || key == "profile") {
      log::info("profile: `{}` has no --{}; skipped", cmd->get_name(), key);
      continue;
    }
    // tune measured the queue threads' CPUs on the sending host: another host's numbering.
    if (key == "cpus" && cmd->get_name() == "receive") {
      log::info("profile: --cpus is the sending host's; `receive` skips it");
      continue;
    }
    if (o->count() > 0) {
      log::info("profile: --{} given on the command line wins", key);
      continue;
    }
    std::string text = value.is_string()    ? value.get<std::string>()
                       : value.is_boolean() ? (value.get<bool>() ? "true" : "false")
                       : value.is_number()  ? value.dump()
                                            : "";
    if (text.empty()) return bad(fmt::format("option {} is not a string, number or boolean", key));
    try {
      o->add_result(text);
      o->run_callback();
    } catch (const CLI::Error& e) {
      return bad(fmt::format("--{} {}: {}", key, text, e.what()));
    }
    log::info("profile: --{} {}", key, text);
  }
  return Status::ok();
}

}  // namespace ramshift::cli
