#include "tools/bench/process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace oklog::bench {
namespace {

// Live children, for the interrupt handler (lock-free slots: the handler may run at any time).
constexpr int kMaxChildren = 32;
std::atomic<pid_t> g_children[kMaxChildren];
const char* g_interrupt_message = nullptr;

void Register(pid_t pid) {
  for (auto& slot : g_children) {
    pid_t expected = 0;
    if (slot.compare_exchange_strong(expected, pid)) return;
  }
}

void Unregister(pid_t pid) {
  for (auto& slot : g_children) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

extern "C" void OnInterrupt(int sig) {
  for (auto& slot : g_children) {
    pid_t pid = slot.load();
    if (pid > 0) kill(pid, SIGKILL);
  }
  if (g_interrupt_message != nullptr) {
    ssize_t ignored = write(2, g_interrupt_message, std::strlen(g_interrupt_message));
    (void)ignored;
  }
  _exit(128 + sig);
}

double Seconds(const struct timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; }

// In the child between fork and exec: only async-signal-safe calls.
void Redirect(const char* path, int fd, int flags) {
  int f = open(path, flags, 0644);
  if (f < 0) _exit(126);
  if (f != fd) {
    dup2(f, fd);
    close(f);
  }
}

}  // namespace

std::optional<Child> Child::Spawn(const std::vector<std::string>& argv, const Redirects& r) {
  if (argv.empty()) return std::nullopt;
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  const char* in = r.stdin_path.empty() ? "/dev/null" : r.stdin_path.c_str();
  const char* out = r.stdout_path.empty() ? nullptr : r.stdout_path.c_str();
  const char* err = r.stderr_path.empty() ? nullptr : r.stderr_path.c_str();
  const char* cwd = r.cwd.empty() ? nullptr : r.cwd.c_str();
  auto started = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return std::nullopt;
  }
  if (pid == 0) {
    if (cwd != nullptr && chdir(cwd) != 0) _exit(126);
    Redirect(in, 0, O_RDONLY);
    if (out != nullptr) Redirect(out, 1, O_WRONLY | O_CREAT | O_TRUNC);
    if (err != nullptr) Redirect(err, 2, O_WRONLY | O_CREAT | O_TRUNC);
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  Register(pid);
  return Child(pid, started);
}

Child::Child(Child&& other) noexcept : pid_(other.pid_), started_(other.started_) { other.pid_ = -1; }

Child::~Child() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    Unregister(pid_);
  }
}

bool Child::Signal(int sig) const { return pid_ > 0 && kill(pid_, sig) == 0; }

ExitInfo Child::Reap(int status, const ::rusage& ru) {
  ExitInfo info;
  info.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  info.cpu_user_s = Seconds(ru.ru_utime);
  info.cpu_sys_s = Seconds(ru.ru_stime);
  if (WIFEXITED(status)) {
    info.exited = true;
    info.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    info.code = WTERMSIG(status);
  }
  Unregister(pid_);
  pid_ = -1;
  return info;
}

std::optional<ExitInfo> Child::Poll() {
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  ::rusage ru{};
  pid_t r = wait4(pid_, &status, WNOHANG, &ru);
  if (r == pid_) return Reap(status, ru);
  return std::nullopt;
}

ExitInfo Child::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // Poll with a short sleep: 1 ms granularity is plenty for runs of 10 ms and more, and keeps
  // this free of SIGCHLD plumbing.
  for (;;) {
    if (auto info = Poll()) return *info;
    if (pid_ <= 0) return ExitInfo{};
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  kill(pid_, SIGKILL);
  int status = 0;
  ::rusage ru{};
  wait4(pid_, &status, 0, &ru);
  ExitInfo info = Reap(status, ru);
  info.timed_out = true;
  return info;
}

ExitInfo RunCommand(const std::vector<std::string>& argv, const Redirects& redirects,
                    std::chrono::milliseconds timeout) {
  auto child = Child::Spawn(argv, redirects);
  if (!child) return ExitInfo{};
  return child->Wait(timeout);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<double> ProcessCpuSeconds(pid_t pid) { return StatCpuSeconds("/proc/" + std::to_string(pid) + "/stat"); }

std::optional<double> StatCpuSeconds(const std::string& stat_path) {
  std::string stat = ReadFileOrEmpty(stat_path);
  // Fields after the command name, which is in parentheses and may hold spaces.
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;
  std::istringstream ss(stat.substr(close_paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // state is field 3; utime 14, stime 15 (1-based over the whole line).
  for (int i = 3; i <= 15; ++i) {
    if (!(ss >> field)) return std::nullopt;
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

void InstallInterruptHandler(const char* message) {
  g_interrupt_message = message;
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

std::vector<int> FreeLoopbackPorts(int n) {
  std::vector<int> fds, ports;
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    fds.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      break;
    }
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) close(fd);
  if (static_cast<int>(ports.size()) != n) ports.clear();
  return ports;
}

}  // namespace oklog::bench
