// Child processes for the benchmark: spawn with redirected standard streams, wait with a
// deadline, collect wall time and the child's CPU time. POSIX only; no shared state, so any
// thread may call these, but a Child must be waited for by the thread that owns it.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace oklog::bench {

// Where the child's standard streams go. An empty path means /dev/null (stdin) or inherit
// (stdout, stderr). Output files are truncated.
struct Redirects {
  std::string stdin_path;
  std::string stdout_path;
  std::string stderr_path;
  std::string cwd;  // empty: the caller's
};

struct ExitInfo {
  bool exited = false;      // false: killed by a signal or timed out
  int code = -1;            // exit status when exited, else the signal number
  bool timed_out = false;   // the deadline passed and the child was killed (SIGKILL)
  double wall_s = 0;        // from spawn to reaped
  double cpu_user_s = 0;    // the child's own rusage (children of the child included)
  double cpu_sys_s = 0;
  bool Ok() const { return exited && code == 0 && !timed_out; }
};

// A spawned process. Not copyable; the destructor SIGKILLs and reaps a child still running, so
// no bench path leaves a process behind.
class Child {
 public:
  // argv[0] is looked up in PATH when it holds no '/'. nullopt when fork or exec failed
  // (the reason goes to stderr).
  static std::optional<Child> Spawn(const std::vector<std::string>& argv, const Redirects& redirects);
  Child(Child&& other) noexcept;
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }
  std::chrono::steady_clock::time_point started() const { return started_; }
  // Sends sig; false if the child is already reaped.
  bool Signal(int sig) const;
  // Waits until the child ends or timeout passes; then SIGKILLs it (timed_out = true).
  ExitInfo Wait(std::chrono::milliseconds timeout);
  // Non-blocking: the exit info if the child has ended.
  std::optional<ExitInfo> Poll();

 private:
  Child(pid_t pid, std::chrono::steady_clock::time_point started) : pid_(pid), started_(started) {}
  ExitInfo Reap(int status, const ::rusage& ru);
  pid_t pid_ = -1;
  std::chrono::steady_clock::time_point started_;
};

// Spawn + Wait.
ExitInfo RunCommand(const std::vector<std::string>& argv, const Redirects& redirects,
                    std::chrono::milliseconds timeout);

// On SIGINT/SIGTERM: SIGKILL every child still running, write message (kept, must outlive
// the process) to stderr, _exit(128 + signal). The temp directory is left behind then.
void InstallInterruptHandler(const char* message);

// Reads a whole (small) file; empty when missing.
std::string ReadFileOrEmpty(const std::string& path);

// utime+stime of a live process from /proc/PID/stat, in seconds; nullopt when unreadable.
std::optional<double> ProcessCpuSeconds(pid_t pid);
// The same from any stat file (e.g. /proc/PID/task/TID/stat for one thread).
std::optional<double> StatCpuSeconds(const std::string& stat_path);

// n distinct 127.0.0.1 TCP ports that were free a moment ago (each bound to port 0 and read
// back; all held open until the last is chosen, so they differ). Empty on failure.
std::vector<int> FreeLoopbackPorts(int n);

}  // namespace oklog::bench
