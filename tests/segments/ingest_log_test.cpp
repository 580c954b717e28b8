#include "segments/ingest_log.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace oklog {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Files(const std::string& dir, const std::string& ext) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ext) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(IngestLogTest, ActiveFlushClaimCommit) {
  TempDir dir;
  Registry m;
  auto log = IngestLog::Open(dir.path(), {}, &m);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  auto seg = (*log)->NewActive();
  ASSERT_TRUE(seg.ok());
  ASSERT_TRUE((*seg)->Append("x\n", 2).ok());
  EXPECT_EQ(Files(dir.path(), ".active").size(), 1u);
  ASSERT_TRUE((*log)->Flush(std::move(seg).value(), "test").ok());
  EXPECT_EQ(Files(dir.path(), ".flushed").size(), 1u);
  auto claimed = (*log)->Claim(1 << 20);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(Files(dir.path(), ".pending").size(), 1u);
  ASSERT_TRUE((*log)->Commit(claimed[0].id).ok());
  EXPECT_TRUE(Files(dir.path(), ".pending").empty());
  EXPECT_EQ((*log)->Commit(claimed[0].id).code(), Code::kNotFound);
}

TEST(IngestLogTest, EmptyActiveIsDeletedOnFlush) {
  TempDir dir;
  Registry m;
  auto log = IngestLog::Open(dir.path(), {}, &m);
  auto seg = (*log)->NewActive();
  ASSERT_TRUE((*log)->Flush(std::move(seg).value(), "test").ok());
  EXPECT_TRUE(Files(dir.path(), ".flushed").empty());
  EXPECT_TRUE(Files(dir.path(), ".active").empty());
}

TEST(IngestLogTest, FailReturnsToFlushedAndTimeoutExpires) {
  TempDir dir;
  Registry m;
  IngestLog::Options o;
  o.pending_timeout = std::chrono::milliseconds(0);
  auto log = IngestLog::Open(dir.path(), o, &m);
  for (int i = 0; i < 2; ++i) {
    auto seg = (*log)->NewActive();
    ASSERT_TRUE((*seg)->Append("x\n", 2).ok());
    ASSERT_TRUE((*log)->Flush(std::move(seg).value(), "test").ok());
  }
  auto c = (*log)->Claim(1);  // at least one even if over the byte budget
  ASSERT_EQ(c.size(), 1u);
  ASSERT_TRUE((*log)->Fail(c[0].id).ok());
  EXPECT_EQ((*log)->flushed_count(), 2u);
  c = (*log)->Claim(1 << 20);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_LT(c[0].id, c[1].id);  // oldest first
  EXPECT_EQ((*log)->ExpirePending(std::chrono::steady_clock::now()), 2);
  EXPECT_EQ((*log)->flushed_count(), 2u);
  EXPECT_EQ((*log)->pending_count(), 0u);
}

TEST(IngestLogTest, SecondProcessIsLockedOut) {
  TempDir dir;
  Registry m;
  auto a = IngestLog::Open(dir.path(), {}, &m);
  ASSERT_TRUE(a.ok());
  // flock locks belong to the open file description, so a second open in-process conflicts.
  auto b = IngestLog::Open(dir.path(), {}, &m);
  EXPECT_EQ(b.status().code(), Code::kUnavailable);
}

TEST(IngestLogTest, RecoveryCutsTornActiveAndReturnsPending) {
  TempDir dir;
  {
    std::ofstream(dir.path() + "/01AAAAAAAAAAAAAAAAAAAAAAAA.active") << "rec1\nrec2\ntorn";
    std::ofstream(dir.path() + "/01AAAAAAAAAAAAAAAAAAAAAAAB.pending") << "rec3\n";
    std::ofstream(dir.path() + "/01AAAAAAAAAAAAAAAAAAAAAAAC.active") << "only torn";
  }
  Registry m;
  auto log = IngestLog::Open(dir.path(), {}, &m);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(Files(dir.path(), ".flushed"),
            (std::vector<std::string>{"01AAAAAAAAAAAAAAAAAAAAAAAA.flushed", "01AAAAAAAAAAAAAAAAAAAAAAAB.flushed"}));
  EXPECT_EQ(ReadFile(dir.path() + "/01AAAAAAAAAAAAAAAAAAAAAAAA.flushed"), "rec1\nrec2\n");
  EXPECT_TRUE(Files(dir.path(), ".active").empty());
  EXPECT_EQ((*log)->flushed_count(), 2u);
}

TEST(IngestLogTest, NonRegularFilesNamedLikeSegmentsAreSkippedAndCountedWithoutBlocking) {
  TempDir dir;
  const std::string active = dir.path() + "/01AAAAAAAAAAAAAAAAAAAAAAAA.active";
  const std::string flushed = dir.path() + "/01AAAAAAAAAAAAAAAAAAAAAAAB.flushed";
  const std::string pending = dir.path() + "/01AAAAAAAAAAAAAAAAAAAAAAAC.pending";
  ASSERT_EQ(::mkfifo(active.c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo(flushed.c_str(), 0644), 0);
  fs::create_directory(pending);
  std::ofstream(dir.path() + "/01AAAAAAAAAAAAAAAAAAAAAAAD.pending") << "rec\n";
  Registry m;
  Result<std::unique_ptr<IngestLog>> log = Status::Cancelled("not opened");
  ASSERT_TRUE(ReturnsWithin(std::chrono::seconds(5), [&] { log = IngestLog::Open(dir.path(), {}, &m); },
                            {active, flushed}))
      << "IngestLog::Open blocked on a FIFO";
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ((*log)->skipped_files(), 3u);
  EXPECT_EQ(SeriesValue("\n" + m.Render(), "oklog_ingest_skipped_files_total"), 3);
  EXPECT_EQ((*log)->flushed_count(), 1u);
  // Left alone under their names: never renamed into the pipeline, never removed.
  for (const std::string& p : {active, flushed, pending}) EXPECT_TRUE(fs::exists(p)) << p;
  auto claimed = (*log)->Claim(1 << 20);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].id, "01AAAAAAAAAAAAAAAAAAAAAAAD");
}

TEST(IngestLogTest, ALockThatIsAFifoFailsOpenInsteadOfBlocking) {
  TempDir dir;
  const std::string lock = dir.path() + "/LOCK";
  ASSERT_EQ(::mkfifo(lock.c_str(), 0644), 0);
  Registry m;
  Result<std::unique_ptr<IngestLog>> log = Status::Cancelled("not opened");
  ASSERT_TRUE(ReturnsWithin(std::chrono::seconds(5), [&] { log = IngestLog::Open(dir.path(), {}, &m); }, {lock}));
  EXPECT_EQ(log.status().code(), Code::kInvalidArgument) << log.status().ToString();
  EXPECT_TRUE(fs::exists(lock));
}

}  // namespace
}  // namespace oklog
