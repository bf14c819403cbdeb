#include "ramshift/qemu/qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>

#include "local_channel.h"

namespace ramshift::qemu {

using Clock = std::chrono::steady_clock;

Result<QmpClient> QmpClient::connect(const std::string& path, std::chrono::milliseconds timeout) {
  QmpClient c;
  c.path_ = path;
  auto fd = connect_unix(path, static_cast<int>(timeout.count()));
  if (!fd)
    return Status(ErrorCode::kUnreachable,
                  fmt::format("no QMP monitor at {} (start QEMU with -qmp unix:{},server=on,"
                              "wait=off): {}",
                              path, path, fd.status().message()));
  c.fd_ = std::move(fd).value();
  auto deadline = Clock::now() + timeout;
  RS_ASSIGN_OR_RETURN(nlohmann::json greeting, c.read_message(deadline));
  if (!greeting.contains("QMP"))
    return Status(ErrorCode::kProtocol, fmt::format("{} did not greet like QMP", path));
  const auto& offered = greeting["QMP"].value("capabilities", nlohmann::json::array());
  const bool oob =
      offered.is_array() && std::find(offered.begin(), offered.end(), "oob") != offered.end();
  RS_ASSIGN_OR_RETURN(
      auto r,
      c.execute("qmp_capabilities",
                oob ? nlohmann::json{{"enable", {"oob"}}} : nlohmann::json(nullptr), timeout));
  (void)r;
  c.oob_ = oob;
  return c;
}

Result<nlohmann::json> QmpClient::read_message(Clock::time_point deadline) {
  for (;;) {
    auto nl = pending_.find('\n');
    if (nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded())
        return Status(ErrorCode::kProtocol,
                      fmt::format("QMP at {} sent non-JSON: {}", path_, line.substr(0, 120)));
      return j;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return Status(ErrorCode::kTimeout, fmt::format("QMP at {} did not answer in time", path_));
    pollfd p{fd_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n <= 0) continue;
    char buf[65536];
    ssize_t got = ::read(fd_.get(), buf, sizeof buf);
    if (got == 0) return Status(ErrorCode::kDisconnected, fmt::format("QEMU closed QMP {}", path_));
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno_status(ErrorCode::kIo, "reading QMP " + path_, errno);
    }
    pending_.append(buf, static_cast<size_t>(got));
  }
}

Result<nlohmann::json> QmpClient::execute(const std::string& command,
                                          const nlohmann::json& arguments,
                                          std::chrono::milliseconds timeout) {
  return run("execute", command, arguments, timeout);
}

Result<nlohmann::json> QmpClient::execute_oob(const std::string& command,
                                              const nlohmann::json& arguments,
                                              std::chrono::milliseconds timeout) {
  return run(oob_ ? "exec-oob" : "execute", command, arguments, timeout);
}

Result<nlohmann::json> QmpClient::run(const char* verb, const std::string& command,
                                      const nlohmann::json& arguments,
                                      std::chrono::milliseconds timeout) {
  const uint64_t id = next_id_++;
  nlohmann::json req = {{verb, command}, {"id", id}};
  if (!arguments.is_null()) req["arguments"] = arguments;
  std::string line = req.dump() + "\n";
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::send(fd_.get(), p, left, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(ErrorCode::kDisconnected, "writing QMP " + path_, errno);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  auto deadline = Clock::now() + timeout;
  for (;;) {
    RS_ASSIGN_OR_RETURN(nlohmann::json m, read_message(deadline));
    // Events, and answers to earlier requests that timed out.
    if (m.contains("event") || m.value("id", uint64_t{0}) != id) continue;
    if (m.contains("error")) {
      std::string desc = m["error"].value("desc", m["error"].dump());
      return Status(ErrorCode::kInvalidArgument, fmt::format("QEMU refused {}: {}", command, desc));
    }
    if (m.contains("return")) return m["return"];
  }
}

}  // namespace ramshift::qemu
