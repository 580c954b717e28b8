#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "common/fs/env.h"
#include "common/fs/fault_injection_env.h"
#include "test_util.h"

namespace oklog {
namespace {

std::vector<std::string> Children(Env* env, const std::string& dir) {
  std::vector<std::string> names;
  EXPECT_TRUE(env->GetChildren(dir, &names).ok());
  std::sort(names.begin(), names.end());
  return names;
}

// Creates dir/name holding data, synced (and the directory synced) when durable.
enum class Durability { kSynced, kUnsynced };
void Create(Env* env, const std::string& path, std::string_view data, Durability d) {
  auto f = env->NewWritableFile(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE((*f)->Append(data).ok());
  if (d == Durability::kSynced) {
    ASSERT_TRUE((*f)->Sync().ok());
    ASSERT_TRUE(env->SyncDir(std::filesystem::path(path).parent_path().string()).ok());
  }
  ASSERT_TRUE((*f)->Close().ok());
}

TEST(PosixEnvTest, WritesReadsRenamesAndRemovesRealFiles) {
  TempDir tmp;
  Env* env = Env::Default();
  const std::string a = tmp.path() + "/a", b = tmp.path() + "/b";
  Create(env, a, "hello ", Durability::kSynced);
  EXPECT_EQ(ReadFile(a), "hello ");
  EXPECT_EQ(env->NewWritableFile(a).status().code(), Code::kAlreadyExists);

  std::string out = "prefix:";
  ASSERT_TRUE(AppendFileContents(env, a, &out).ok());
  EXPECT_EQ(out, "prefix:hello ");
  auto r = env->NewRandomAccessFile(a);
  ASSERT_TRUE(r.ok());
  char buf[16];
  size_t got = 0;
  ASSERT_TRUE((*r)->Read(2, sizeof buf, buf, &got).ok());
  EXPECT_EQ(std::string(buf, got), "llo ");  // short only at the end of the file
  EXPECT_EQ(*(*r)->Size(), 6u);

  ASSERT_TRUE(env->RenameFile(a, b).ok());
  EXPECT_EQ(Children(env, tmp.path()), std::vector<std::string>{"b"});
  Create(env, a, "other", Durability::kSynced);
  EXPECT_EQ(env->RenameNoReplace(a, b).code(), Code::kAlreadyExists);
  EXPECT_EQ(ReadFile(b), "hello ");
  ASSERT_TRUE(env->TruncateFile(b, 2).ok());
  EXPECT_EQ(env->GetFileInfo(b)->size, 2u);
  EXPECT_TRUE(env->GetFileInfo(b)->regular);
  ASSERT_TRUE(env->RemoveFile(b).ok());
  EXPECT_EQ(env->RemoveFile(b).code(), Code::kNotFound);
  EXPECT_EQ(env->GetFileInfo(b).status().code(), Code::kNotFound);
  EXPECT_EQ(env->NewRandomAccessFile(b).status().code(), Code::kNotFound);
}

TEST(PosixEnvTest, CreatesDirectoriesAndSetsModifiedTimes) {
  TempDir tmp;
  Env* env = Env::Default();
  const std::string d = tmp.path() + "/x/y";
  ASSERT_TRUE(env->CreateDirs(d).ok());
  ASSERT_TRUE(env->CreateDirs(d).ok());  // exists: fine
  EXPECT_FALSE(env->GetFileInfo(d)->regular);
  Create(env, d + "/f", "x", Durability::kUnsynced);
  const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'600'000'000'123));
  ASSERT_TRUE(env->SetModifiedTime(d + "/f", t).ok());
  EXPECT_EQ(env->GetFileInfo(d + "/f")->mtime, t);
  std::vector<std::string> names;
  EXPECT_EQ(env->GetChildren(tmp.path() + "/missing", &names).code(), Code::kNotFound);
}

TEST(PosixEnvTest, ASecondLockOnTheSameFileIsUnavailableUntilReleased) {
  TempDir tmp;
  Env* env = Env::Default();
  auto a = env->LockFile(tmp.path() + "/LOCK");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(env->LockFile(tmp.path() + "/LOCK").status().code(), Code::kUnavailable);
  a.value().reset();
  EXPECT_TRUE(env->LockFile(tmp.path() + "/LOCK").ok());
}

TEST(PosixEnvTest, OnlyRegularFilesAreOpenedAndAFifoNeverBlocks) {
  TempDir tmp;
  Env* env = Env::Default();
  const std::string fifo = tmp.path() + "/fifo", dir = tmp.path() + "/dir", sock = tmp.path() + "/sock";
  const std::string file = tmp.path() + "/file", to_fifo = tmp.path() + "/to_fifo", to_file = tmp.path() + "/to_file";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  ASSERT_TRUE(env->CreateDirs(dir).ok());
  const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, sock.c_str(), sock.size() + 1);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  Create(env, file, "data", Durability::kUnsynced);
  std::filesystem::create_symlink(fifo, to_fifo);
  std::filesystem::create_symlink(file, to_file);

  std::vector<Code> codes;
  std::string appended;
  Code append_code = Code::kOk, lock_code = Code::kOk;
  ASSERT_TRUE(ReturnsWithin(
      std::chrono::seconds(5),
      [&] {
        for (const std::string& p : {fifo, to_fifo, dir, sock, std::string("/dev/null")})
          codes.push_back(env->NewRandomAccessFile(p).status().code());
        append_code = AppendFileContents(env, fifo, &appended).code();
        lock_code = env->LockFile(fifo).status().code();
      },
      {fifo}))
      << "opening a FIFO blocked";
  ::close(s);
  EXPECT_EQ(codes, std::vector<Code>(5, Code::kInvalidArgument));
  EXPECT_EQ(append_code, Code::kInvalidArgument);
  EXPECT_TRUE(appended.empty());
  EXPECT_EQ(lock_code, Code::kInvalidArgument);
  EXPECT_FALSE(env->GetFileInfo(fifo)->regular);
  EXPECT_FALSE(env->GetFileInfo(to_fifo)->regular);
  EXPECT_FALSE(env->GetFileInfo(sock)->regular);

  // A regular file, directly or through a symlink, reads as before (blocking reads restored).
  auto r = env->NewRandomAccessFile(to_file);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  char buf[8];
  size_t got = 0;
  ASSERT_TRUE((*r)->Read(0, sizeof buf, buf, &got).ok());
  EXPECT_EQ(std::string(buf, got), "data");
  EXPECT_TRUE(env->GetFileInfo(to_file)->regular);
}

TEST(FaultInjectionEnvTest, WriteFaultReportsTheErrnoAndWritesNothing) {
  TempDir tmp;
  FaultInjectionEnv env;
  env.Inject({.op = FsOp::kWrite, .error = ENOSPC});
  auto f = env.NewWritableFile(tmp.path() + "/f");
  ASSERT_TRUE(f.ok());
  Status s = (*f)->Append("data");
  EXPECT_EQ(s.code(), Code::kResourceExhausted) << s.ToString();
  EXPECT_EQ(ReadFile(tmp.path() + "/f"), "");
  env.ClearFaults();
  EXPECT_TRUE((*f)->Append("data").ok());
  EXPECT_EQ(ReadFile(tmp.path() + "/f"), "data");
  EXPECT_EQ(env.failures(), 1);
}

TEST(FaultInjectionEnvTest, TornWriteLandsHalfItsBytes) {
  TempDir tmp;
  FaultInjectionEnv env;
  env.Inject({.op = FsOp::kWrite, .error = EIO, .times = 1, .torn = true});
  auto f = env.NewWritableFile(tmp.path() + "/f");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->Append("abcdef").code(), Code::kIOError);
  EXPECT_EQ(ReadFile(tmp.path() + "/f"), "abc");
  EXPECT_TRUE((*f)->Append("gh").ok());  // the one failure is spent
  EXPECT_EQ(ReadFile(tmp.path() + "/f"), "abcgh");
  env.CrashAfter(0);
  env.Inject({.op = FsOp::kWrite, .error = EIO, .torn = true});
  EXPECT_EQ((*f)->Append("xyz").code(), Code::kIOError);
  EXPECT_EQ(ReadFile(tmp.path() + "/f"), "abcgh");  // a dead process writes nothing
}

TEST(FaultInjectionEnvTest, FaultMatchesOnlyItsPathsAfterNSuccessesForNTimes) {
  TempDir tmp;
  FaultInjectionEnv env;
  env.Inject({.op = FsOp::kRename, .error = EIO, .path_contains = ".seg", .after = 1, .times = 2});
  for (const char* n : {"a.seg", "b.seg", "c.seg", "d.seg", "e.log"}) Create(&env, tmp.path() + "/" + n, "x", Durability::kSynced);
  auto rename = [&](const char* from, const char* to) {
    return env.RenameFile(tmp.path() + "/" + from, tmp.path() + "/" + to).code();
  };
  EXPECT_EQ(rename("e.log", "f.log"), Code::kOk);      // not a matching path
  EXPECT_EQ(rename("a.seg", "a2"), Code::kOk);         // the one success
  EXPECT_EQ(rename("b.seg", "b2"), Code::kIOError);    // failure 1
  EXPECT_EQ(rename("c.seg", "c2"), Code::kIOError);    // failure 2
  EXPECT_EQ(rename("c.seg", "c2"), Code::kOk);         // lifted by itself
  EXPECT_EQ(Children(&env, tmp.path()), (std::vector<std::string>{"a2", "b.seg", "c2", "d.seg", "f.log"}));
  // Sync faults: the data stays unsynced, and a power cut loses it.
  env.Inject({.op = FsOp::kSync, .error = EIO});
  auto f = env.NewWritableFile(tmp.path() + "/g");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("zz").ok());
  EXPECT_EQ((*f)->Sync().code(), Code::kIOError);
  f.value().reset();
  ASSERT_TRUE(env.SyncDir(tmp.path()).ok());
  ASSERT_TRUE(env.SimulatePowerLoss().ok());
  EXPECT_EQ(ReadFile(tmp.path() + "/g"), "");
}

TEST(FaultInjectionEnvTest, PowerLossKeepsExactlyWhatWasSynced) {
  TempDir tmp;
  FaultInjectionEnv env;
  const std::string dir = tmp.path();
  auto f = env.NewWritableFile(dir + "/log");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("synced;").ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE(env.SyncDir(dir).ok());
  ASSERT_TRUE((*f)->Append("lost;").ok());
  EXPECT_EQ(ReadFile(dir + "/log"), "synced;lost;");  // in the page cache until the crash
  Create(&env, dir + "/durable", "d", Durability::kSynced);
  auto g = env.NewWritableFile(dir + "/tmp");                       // data synced, rename not
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE((*g)->Append("renamed").ok());
  ASSERT_TRUE((*g)->Sync().ok());
  ASSERT_TRUE(env.SyncDir(dir).ok());
  ASSERT_TRUE(env.RenameFile(dir + "/tmp", dir + "/final").ok());
  Create(&env, dir + "/new", "n", Durability::kUnsynced);  // data and name unsynced
  EXPECT_EQ(Children(&env, dir), (std::vector<std::string>{"durable", "final", "log", "new"}));
  f.value().reset();
  g.value().reset();

  ASSERT_TRUE(env.SimulatePowerLoss().ok());
  EXPECT_EQ(ReadFile(dir + "/log"), "synced;");
  EXPECT_EQ(ReadFile(dir + "/durable"), "d");
  EXPECT_EQ(ReadFile(dir + "/tmp"), "renamed");  // the rename is undone, the data kept
  EXPECT_EQ(Children(&env, dir), (std::vector<std::string>{"durable", "log", "tmp"}));
}

TEST(FaultInjectionEnvTest, CrashedEnvChangesNothingMore) {
  TempDir tmp;
  FaultInjectionEnv env;
  Create(&env, tmp.path() + "/a", "a", Durability::kSynced);
  env.CrashAfter(1);
  EXPECT_TRUE(env.NewWritableFile(tmp.path() + "/b").ok());  // the one operation left
  EXPECT_TRUE(env.crashed());
  EXPECT_EQ(env.NewWritableFile(tmp.path() + "/c").status().code(), Code::kIOError);
  EXPECT_EQ(env.RemoveFile(tmp.path() + "/a").code(), Code::kIOError);
  EXPECT_EQ(env.RenameFile(tmp.path() + "/a", tmp.path() + "/z").code(), Code::kIOError);
  EXPECT_EQ(env.SyncDir(tmp.path()).code(), Code::kIOError);
  EXPECT_EQ(ReadFile(tmp.path() + "/a"), "a");  // reads still work
  ASSERT_TRUE(env.SimulatePowerLoss().ok());
  EXPECT_FALSE(env.crashed());
  EXPECT_EQ(Children(&env, tmp.path()), std::vector<std::string>{"a"});  // b was never durable
}

}  // namespace
}  // namespace oklog
