#include "segments/record_merge.h"

#include <gtest/gtest.h>

#include "common/ulid.h"

namespace oklog {
namespace {

std::string Rec(uint64_t ms, uint64_t n, const std::string& text) {
  return Ulid::FromParts(ms, 0, n).ToString() + " t " + text + "\n";
}

TEST(RecordMergeTest, ParseSkipsInvalidLinesAndTornTail) {
  std::string buf = Rec(1, 1, "a") + "garbage line\n" + Rec(1, 2, "b") + "01ARYZ6S41TSV4RRFFQ69G5FAV\n" +
                    Rec(1, 3, "c").substr(0, 20);
  ParseStats ps;
  auto recs = ParseRecords(buf, &ps);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(ps.records, 2u);
  EXPECT_EQ(ps.invalid, 3u);
}

TEST(RecordMergeTest, LowerCaseUlidIsNotCanonical) {
  std::string r = Ulid::FromParts(1700000000000, 0xFFFF, ~uint64_t{0}).ToString() + " t a\n";
  for (char& c : r) c = static_cast<char>(tolower(c));
  ASSERT_NE(r.substr(0, 26), Ulid::FromParts(1700000000000, 0xFFFF, ~uint64_t{0}).ToString());
  ParseStats ps;
  EXPECT_TRUE(ParseRecords(r, &ps).empty());
}

TEST(RecordMergeTest, SortsUnsortedRun) {
  std::string a = Rec(2, 0, "x"), b = Rec(1, 0, "y");
  std::vector<std::string_view> run{a, b};
  EXPECT_TRUE(SortRecords(&run));
  EXPECT_EQ(run[0], b);
  EXPECT_FALSE(SortRecords(&run));
}

TEST(RecordMergeTest, MergeDropsDuplicatesAcrossRuns) {
  std::vector<std::string> s1{Rec(1, 1, "a"), Rec(3, 1, "c"), Rec(5, 1, "e")};
  std::vector<std::string> s2{Rec(2, 1, "b"), Rec(3, 1, "c"), Rec(6, 1, "f")};
  std::vector<std::string> s3{Rec(3, 1, "c"), Rec(4, 1, "d")};
  std::vector<std::vector<std::string_view>> runs(3);
  for (auto& r : s1) runs[0].push_back(r);
  for (auto& r : s2) runs[1].push_back(r);
  for (auto& r : s3) runs[2].push_back(r);
  std::string out;
  uint64_t dups = MergeRuns(runs, [&](std::string_view r) {
    out += r.substr(29, 1);
    return true;
  });
  EXPECT_EQ(out, "abcdef");
  EXPECT_EQ(dups, 2u);
}

TEST(RecordMergeTest, SingleRunDuplicatesDropped) {
  std::string a = Rec(1, 1, "a");
  std::vector<std::vector<std::string_view>> runs{{a, a, a}};
  int n = 0;
  EXPECT_EQ(MergeRuns(runs, [&](std::string_view) { return ++n, true; }), 2u);
  EXPECT_EQ(n, 1);
}

}  // namespace
}  // namespace oklog
