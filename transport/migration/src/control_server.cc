#include "ramshift/migration/control_server.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "ramshift/base/log.h"

namespace ramshift::migration {
namespace {

// Why 64 KiB: a command is a few dozen bytes; anything longer is not a client of ours.
constexpr size_t kMaxLine = 64 * 1024;
// Why 16: status tools and a metrics scraper at once; more is a client that leaks sockets.
constexpr size_t kMaxClients = 16;

Result<sockaddr_un> socket_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("control socket path '{}' is empty or longer than {} bytes", path,
                              sizeof addr.sun_path - 1));
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// Whether a process answers at `path`.
bool answers(const sockaddr_un& addr) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  return fd.valid() &&
         ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

std::string error_line(const std::string& desc) {
  return nlohmann::json{{"error", {{"class", "GenericError"}, {"desc", desc}}}}.dump();
}

bool send_all(int fd, const std::string& text) {
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::send(fd, text.data() + off, text.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 1000) <= 0) return false;  // a client that does not read: dropped
      continue;
    }
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Result<std::string> control_socket_path(const std::string& uri) {
  if (uri.rfind("unix:", 0) == 0) return uri.substr(5);
  if (uri.find(':') != std::string::npos && uri.find('/') != 0)
    return Status(ErrorCode::kInvalidArgument, fmt::format("--control '{}': use unix:PATH", uri));
  return uri;
}

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path,
                                                            ControlHandlers handlers) {
  RS_ASSIGN_OR_RETURN(sockaddr_un addr, socket_address(path));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return Status(ErrorCode::kAddressInUse,
                    fmt::format("control socket {}: a file that is not a socket is there; "
                                "remove it or choose another path",
                                path));
    if (answers(addr))
      return Status(ErrorCode::kAddressInUse,
                    fmt::format("control socket {} is in use by a running ramshift; choose "
                                "another path",
                                path));
    log::info("control socket {}: replacing a stale socket (nobody listened)", path);
    ::unlink(path.c_str());
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return errno_status(ErrorCode::kIo, "control socket", errno);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return errno_status(errno == EADDRINUSE ? ErrorCode::kAddressInUse : ErrorCode::kIo,
                        fmt::format("control socket {}", path), errno);
  ::chmod(path.c_str(), 0600);
  if (::listen(fd.get(), 8) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return errno_status(ErrorCode::kIo, fmt::format("control socket {}", path), err);
  }
  uint64_t inode = ::lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) {
    ::unlink(path.c_str());
    return errno_status(ErrorCode::kInternal, "eventfd", errno);
  }
  return std::unique_ptr<ControlServer>(
      new ControlServer(path, std::move(handlers), std::move(fd), std::move(wake), inode));
}

ControlServer::ControlServer(std::string path, ControlHandlers handlers, UniqueFd listener,
                             UniqueFd wake, uint64_t inode)
    : path_(std::move(path)),
      handlers_(std::move(handlers)),
      listener_(std::move(listener)),
      wake_(std::move(wake)),
      inode_(inode),
      thread_([this] { serve(); }) {}

ControlServer::~ControlServer() {
  const uint64_t one = 1;
  if (::write(wake_.get(), &one, sizeof one) < 0) log::warn("control socket: {}", strerror(errno));
  thread_.join();
  // Removed only if it is still the file we made (a successor may have replaced it).
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(path_.c_str());
}

std::string ControlServer::answer(const std::string& line) const {
  auto req = nlohmann::json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object())
    return error_line("not a JSON object; send {\"execute\": \"query\"}");
  auto exec = req.find("execute");
  if (exec == req.end() || !exec->is_string())
    return error_line("the object has no \"execute\" string");
  const std::string cmd = exec->get<std::string>();
  const nlohmann::json no_args = nlohmann::json::object();
  auto args_it = req.find("arguments");
  const nlohmann::json& args = args_it != req.end() ? *args_it : no_args;
  if (!args.is_object()) return error_line("\"arguments\" must be an object");
  if (cmd == "query") {
    auto j = nlohmann::ordered_json::parse(progress_json(handlers_.query()));
    nlohmann::ordered_json out;
    out["role"] = handlers_.role;
    for (auto& [k, v] : j.items()) out[k] = v;
    return nlohmann::ordered_json{{"return", out}}.dump();
  }
  if (cmd == "cancel") {
    handlers_.cancel("cancelled over the control socket");
    return R"({"return":{}})";
  }
  if (cmd == "set-bandwidth") {
    auto bps = args.find("bytes-per-second");
    if (bps == args.end() || !bps->is_number_unsigned())
      return error_line("set-bandwidth needs {\"bytes-per-second\": N} (N >= 0; 0 = unlimited)");
    if (!handlers_.set_bandwidth)
      return error_line(fmt::format("set-bandwidth is not supported by {}", handlers_.role));
    Status s = handlers_.set_bandwidth(bps->get<uint64_t>());
    return s ? R"({"return":{}})" : error_line(s.message());
  }
  if (cmd == "start-postcopy") {
    if (!handlers_.start_postcopy)
      return error_line(fmt::format(
          "start-postcopy is not supported by {}: the source of a migration starts post-copy",
          handlers_.role));
    Status s = handlers_.start_postcopy();
    return s ? R"({"return":{}})" : error_line(s.message());
  }
  if (cmd == "metrics")
    return nlohmann::json{
        {"return", {{"text", progress_metrics(handlers_.query(), handlers_.role)}}}}
        .dump();
  return error_line(fmt::format(
      "unknown command '{}'; known: query, cancel, set-bandwidth, start-postcopy, metrics", cmd));
}

void ControlServer::serve() {
  struct Client {
    UniqueFd fd;
    std::string buffer;
  };
  std::vector<Client> clients;
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({wake_.get(), POLLIN, 0});
    fds.push_back({listener_.get(), POLLIN, 0});
    for (auto& c : clients) fds.push_back({c.fd.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      log::error("control socket: poll: {}", strerror(errno));
      return;
    }
    if (fds[0].revents) return;
    std::vector<bool> drop(clients.size(), false);
    for (size_t i = 0; i < clients.size(); ++i) {
      if (!fds[i + 2].revents) continue;
      char buf[4096];
      ssize_t n = ::recv(clients[i].fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        drop[i] = true;
        continue;
      }
      std::string& b = clients[i].buffer;
      b.append(buf, static_cast<size_t>(n));
      for (size_t nl; (nl = b.find('\n')) != std::string::npos;) {
        std::string line = b.substr(0, nl);
        b.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        if (!send_all(clients[i].fd.get(), answer(line) + "\n")) {
          drop[i] = true;
          break;
        }
      }
      if (b.size() > kMaxLine) {
        (void)send_all(clients[i].fd.get(), error_line("line too long") + "\n");
        drop[i] = true;
      }
    }
    for (size_t i = clients.size(); i-- > 0;)
      if (drop[i]) clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
    if (fds[1].revents) {
      UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (c.valid()) {
        if (clients.size() >= kMaxClients)
          (void)send_all(c.get(), error_line("too many control clients") + "\n");
        else
          clients.push_back({std::move(c), {}});
      }
    }
  }
}

Result<std::string> control_call(const std::string& path, const std::string& request,
                                 std::chrono::milliseconds timeout) {
  RS_ASSIGN_OR_RETURN(sockaddr_un addr, socket_address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_status(ErrorCode::kIo, "socket", errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED)
      return Status(ErrorCode::kNotFound,
                    fmt::format("no migration answers at {} ({}): it has ended, or was started "
                                "without --control",
                                path, strerror(err)));
    return errno_status(ErrorCode::kIo, fmt::format("control socket {}", path), err);
  }
  if (!send_all(fd.get(), request + "\n"))
    return Status(ErrorCode::kIo,
                  fmt::format("control socket {}: the request was not taken", path));
  std::string reply;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = reply.find('\n'); nl != std::string::npos) return reply.substr(0, nl);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd.get(), POLLIN, 0};
    int r = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return Status(ErrorCode::kTimeout, fmt::format("control socket {}: no answer within {} ms",
                                                     path, timeout.count()));
    char buf[4096];
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0)
      return Status(ErrorCode::kDisconnected,
                    fmt::format("control socket {}: closed before answering (the migration "
                                "ended)",
                                path));
    reply.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace ramshift::migration
