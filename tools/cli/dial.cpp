#include "tools/cli/dial.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/log.h"

namespace oklog {

int DialWithBackoff(const std::vector<Address>& targets, size_t* current, int* backoff_ms,
                    std::optional<std::chrono::steady_clock::time_point> deadline) {
  for (;;) {
    if (deadline && std::chrono::steady_clock::now() >= *deadline) return -1;
    const Address& a = targets[*current];
    auto addrs = Resolve(a);
    if (addrs.ok()) {
      for (const auto& ss : *addrs) {
        int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        socklen_t len = ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) == 0) {
          *backoff_ms = 16;
          return fd;
        }
        ::close(fd);
      }
    }
    Logger("forward")->warn("cannot reach {}: {}; retrying in {} ms", a.HostPort(),
                            addrs.ok() ? std::strerror(errno) : addrs.status().message(), *backoff_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(*backoff_ms));
    *backoff_ms = std::min(*backoff_ms * 2, 1024);
    *current = (*current + 1) % targets.size();
  }
}

}  // namespace oklog
