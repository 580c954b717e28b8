// DiskGuard: full below the floor or after a write failed for lack of space, not full again
// until the disk gained room; a free space it cannot read keeps the last state. And Env::FreeBytes of the real filesystem.
#include <gtest/gtest.h>
#include <sys/statvfs.h>

#include "common/fs/disk_guard.h"
#include "common/fs/fault_injection_env.h"
#include <thread>

#include "test_util.h"

namespace oklog {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class DiskGuardTest : public ::testing::Test {
 protected:
  std::unique_ptr<DiskGuard> Make(uint64_t floor) {
    DiskGuard::Options o;
    o.dir = dir_.path();
    o.label = "ingest";
    o.flag = "-ingest.min-free-bytes";
    o.min_free_bytes = floor;
    o.env = &env_;
    return std::make_unique<DiskGuard>(o, &metrics_);
  }
  double Series(const std::string& s) { return SeriesValue(metrics_.Render(), s); }

  TempDir dir_;
  FaultInjectionEnv env_;
  Registry metrics_;
};

TEST(PosixEnvFreeBytesTest, MatchesStatvfsAndFailsOnAMissingPath) {
  TempDir dir;
  Result<uint64_t> got = Env::Default()->FreeBytes(dir.path());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  struct statvfs st;
  ASSERT_EQ(::statvfs(dir.path().c_str(), &st), 0);
  const uint64_t want = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  // Other processes write meanwhile: the same figure within 64 MiB.
  EXPECT_LT(*got > want ? *got - want : want - *got, 64 * kMiB);
  Result<uint64_t> missing = Env::Default()->FreeBytes(dir.path() + "/no/such/dir");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no/such/dir"), std::string::npos) << missing.status().ToString();
}

TEST_F(DiskGuardTest, BelowTheFloorIsFullWithAReasonAndRoomAboveTheFloorPlusTheMarginResumes) {
  auto g = Make(100 * kMiB);
  env_.SetFreeBytes(500 * kMiB);
  EXPECT_FALSE(g->Poll());
  EXPECT_TRUE(g->reason().empty());
  EXPECT_EQ(Series("oklog_disk_free_bytes{dir=\"ingest\"}"), 500.0 * kMiB);
  EXPECT_EQ(Series("oklog_disk_full{dir=\"ingest\"}"), 0);

  env_.SetFreeBytes(99 * kMiB);
  EXPECT_TRUE(g->Poll());
  EXPECT_TRUE(g->full());
  EXPECT_EQ(g->reason(), "ingest disk: " + dir_.path() + " has " + std::to_string(99 * kMiB) +
                             " bytes free, below -ingest.min-free-bytes " + std::to_string(100 * kMiB));
  EXPECT_EQ(Series("oklog_disk_full{dir=\"ingest\"}"), 1);
  // At the floor, or just above it, is not enough: the margin is max(1 MiB, floor / 10).
  env_.SetFreeBytes(100 * kMiB);
  EXPECT_TRUE(g->Poll());
  env_.SetFreeBytes(109 * kMiB);
  EXPECT_TRUE(g->Poll());
  env_.SetFreeBytes(110 * kMiB);
  EXPECT_FALSE(g->Poll());
  EXPECT_TRUE(g->reason().empty());
  EXPECT_EQ(Series("oklog_disk_full{dir=\"ingest\"}"), 0);
}

TEST_F(DiskGuardTest, AWriteThatFailedForLackOfSpaceMakesItFullUntilTheDiskGainedRoom) {
  auto g = Make(0);  // no floor: only failed writes make it full
  env_.SetFreeBytes(3 * kMiB);
  EXPECT_FALSE(g->Poll());
  g->NoteWriteError(Status::IOError("write /x: Input/output error"));
  EXPECT_FALSE(g->full()) << "an I/O error is not a full disk";
  g->NoteWriteError(Status::ResourceExhausted("write /x/1.active: No space left on device"));
  EXPECT_TRUE(g->full());
  EXPECT_NE(g->reason().find("No space left on device"), std::string::npos) << g->reason();
  // The same 3 MiB free as when the write failed: still full; 1 MiB more: room again.
  EXPECT_TRUE(g->Poll());
  env_.SetFreeBytes(3 * kMiB + kMiB - 1);
  EXPECT_TRUE(g->Poll());
  env_.SetFreeBytes(4 * kMiB);
  EXPECT_FALSE(g->Poll());
}

// No inodes left, or a quota: the write failed but the free bytes never show it. Above the floor
// plus the margin, writes are let to try again after error_retry; a new failure latches anew.
TEST_F(DiskGuardTest, AFailedWriteThatFreeBytesDoNotExplainIsRetriedAfterAWhile) {
  DiskGuard::Options o;
  o.dir = dir_.path();
  o.label = "store";
  o.flag = "-store.min-free-bytes";
  o.min_free_bytes = 10 * kMiB;
  o.error_retry = std::chrono::milliseconds(300);
  o.env = &env_;
  DiskGuard g(o, &metrics_);
  env_.SetFreeBytes(500 * kMiB);
  EXPECT_FALSE(g.Poll());
  g.NoteWriteError(Status::ResourceExhausted("create /d/x: No space left on device (no inodes)"));
  EXPECT_TRUE(g.Poll()) << "the same free bytes as at the failure";
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_FALSE(g.Poll()) << "latched for good by a failure free bytes do not explain";
  g.NoteWriteError(Status::ResourceExhausted("create /d/y: No space left on device (no inodes)"));
  EXPECT_TRUE(g.full());
  // Below the floor, the retry does not apply.
  env_.SetFreeBytes(5 * kMiB);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_TRUE(g.Poll());
}

TEST_F(DiskGuardTest, AFreeSpaceItCannotReadKeepsTheLastState) {
  DiskGuard::Options o;
  o.dir = dir_.path() + "/gone";
  o.label = "store";
  o.flag = "-store.min-free-bytes";
  o.min_free_bytes = 1;
  DiskGuard g(o, &metrics_);  // the real Env: statvfs of a missing directory fails
  EXPECT_FALSE(g.Poll());
  g.NoteWriteError(Status::ResourceExhausted("no space"));
  EXPECT_TRUE(g.full());
  EXPECT_TRUE(g.Poll()) << "an unreadable disk is not known to have room";
  EXPECT_EQ(Series("oklog_disk_full{dir=\"store\"}"), 1);
}

}  // namespace
}  // namespace oklog
