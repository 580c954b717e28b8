// Helpers shared by the test suites: temporary directories, files, loopback connections, the
// ports a node reports (-ports.file; process tests start nodes on port 0, so no port is reserved
// ahead and raced for), and real child processes of the `oklog` binary (path from OKLOG_BINARY,
// set by CTest).
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace oklog {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = std::filesystem::temp_directory_path().string() + "/oklog_test_XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// What GET /health answers on a healthy node without -cluster.key-file.
inline constexpr std::string_view kHealthyUnkeyed = "OK\nunauthenticated cluster: no -cluster.key-file\n";

// The value of one series ("name" or "name{labels}") in a rendered /metrics text, or -1 when
// the series is not there.
inline double SeriesValue(const std::string& rendered, const std::string& series) {
  size_t at = rendered.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(rendered.substr(at + series.size() + 2));
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// A TCP connection to 127.0.0.1:port, or -1. rcvbuf > 0 sets SO_RCVBUF first (a slow client).
inline int ConnectLoopback(uint16_t port, int rcvbuf = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Writes all of s to fd (stops early if the peer is gone; no SIGPIPE).
inline void SendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// Sends bytes to 127.0.0.1:port and reads until the server closes (at most 5 s of silence):
// for hostile input that the server must drop. False when the connect failed.
inline bool SendAndDrain(uint16_t port, const std::string& bytes) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return false;
  (void)!::write(fd, bytes.data(), bytes.size());
  char buf[256];
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (::read(fd, buf, sizeof buf) > 0) {
  }
  ::close(fd);
  return true;
}

inline std::string OklogBinary() {
  const char* p = std::getenv("OKLOG_BINARY");
  return p ? p : "oklog";
}

// Polls cond every 20 ms until it holds or the timeout passes.
inline bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

// A child process with stdout and stderr in files; killed (SIGKILL) if still running at
// destruction, so a failing test never leaves processes behind.
// Runs fn on its own thread and reports whether it returned within `limit`. A call stuck
// opening one of `fifos` for reading (a FIFO without a writer blocks that open forever) is then
// released by opening the FIFO for writing, so a test fails instead of hanging.
inline bool ReturnsWithin(std::chrono::milliseconds limit, const std::function<void()>& fn,
                          const std::vector<std::string>& fifos) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread t([fn, done] {
    fn();
    done->store(true);
  });
  const bool in_time = WaitFor([&] { return done->load(); }, limit);
  for (int i = 0; !done->load() && i < 1000; ++i) {
    for (const std::string& f : fifos) {
      int fd = ::open(f.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // ENXIO while nobody reads
      if (fd >= 0) ::close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (done->load()) t.join();
  else t.detach();  // still stuck: leak it rather than hang the suite
  return in_time;
}

class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& log_dir, const std::string& name,
          const std::string& stdin_file = "")
      : out_(log_dir + "/" + name + ".out"), err_(log_dir + "/" + name + ".err") {
    pid_ = ::fork();
    if (pid_ == 0) {
      int in = stdin_file.empty() ? ::open("/dev/null", O_RDONLY) : ::open(stdin_file.c_str(), O_RDONLY);
      int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(in, 0);
      ::dup2(o, 1);
      ::dup2(e, 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Process() {
    if (running()) {
      ::kill(pid_, SIGKILL);
      Wait(std::chrono::seconds(10));
    }
  }
  bool running() {
    if (exited_) return false;
    int st;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = st;
      return false;
    }
    return true;
  }
  void Signal(int sig) { ::kill(pid_, sig); }
  // Waits for exit; returns the exit code, 128+signal, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout) {
    if (!WaitFor([&] { return !running(); }, timeout)) return -1;
    if (WIFEXITED(status_)) return WEXITSTATUS(status_);
    if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
    return -1;
  }
  std::string Stdout() const { return ReadFile(out_); }
  std::string Stderr() const { return ReadFile(err_); }
  pid_t pid() const { return pid_; }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

// The listeners a node reported in its -ports.file ("name=host:port" lines): name -> port.
// Empty when the file is missing or holds no valid line.
inline std::map<std::string, uint16_t> ReadPortsFile(const std::string& path) {
  std::map<std::string, uint16_t> ports;
  std::istringstream in(ReadFile(path));
  for (std::string line; std::getline(in, line);) {
    const size_t eq = line.find('='), colon = line.rfind(':');
    if (eq == std::string::npos || colon == std::string::npos || colon < eq) continue;
    const int port = std::atoi(line.c_str() + colon + 1);
    if (port > 0 && port < 65536) ports[line.substr(0, eq)] = static_cast<uint16_t>(port);
  }
  return ports;
}

// Waits for a starting node's -ports.file (written once every listener is bound) while
// running() holds. Empty when the node exited first or the timeout passed. Remove the file
// before starting the node, or a restart reads the previous run's ports.
inline std::map<std::string, uint16_t> WaitForPorts(const std::string& path, const std::function<bool()>& running,
                                                    std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  std::map<std::string, uint16_t> ports;
  WaitFor([&] {
    ports = ReadPortsFile(path);
    return !ports.empty() || !running();
  }, timeout);
  return ports;
}

// Runs a shell command, returning its stdout; exit status in *rc if given.
inline std::string Shell(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  if (rc) *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

}  // namespace oklog
