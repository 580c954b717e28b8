#include "segments/record_merge.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

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

TEST(RecordMergeTest, MergeRunsKeepsTheLowestRunsCopyAndStopsWhenEmitSaysSo) {
  std::string a0 = Rec(1, 1, "x"), a1 = Rec(1, 1, "y"), b = Rec(2, 1, "b");
  std::vector<std::vector<std::string_view>> runs{{b}, {a1}, {a0}};
  std::vector<std::string_view> seen;
  MergeRuns(runs, [&](std::string_view r) { return seen.push_back(r), true; });
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].data(), a1.data());  // run 1's copy beats run 2's
  int n = 0;
  MergeRuns(runs, [&](std::string_view) { return ++n, false; });
  EXPECT_EQ(n, 1);
}

// Drains a merge of in-memory sources (each sorted in the merge's order) as the callers do:
// pop, gate, offer that source's next head.
std::vector<std::string> Drain(MergeByUlid* m, const std::vector<std::vector<std::string>>& src) {
  std::vector<size_t> next(src.size(), 0);
  for (size_t i = 0; i < src.size(); ++i)
    if (!src[i].empty()) m->Offer(i, src[i][next[i]++]);
  std::vector<std::string> out;
  while (!m->empty()) {
    size_t s = m->Pop().source;
    const std::string& r = src[s][next[s] - 1];
    if (next[s] < src[s].size()) m->Offer(s, src[s][next[s]++]);
    if (m->Accept(r)) out.push_back(r);
  }
  return out;
}

TEST(MergeByUlidTest, MatchesSortAndUniqueInBothOrdersOnRandomSources) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    const bool desc = round % 2 == 1;
    size_t k = 1 + rng() % 6;
    std::vector<std::vector<std::string>> src(k);
    std::vector<std::string> all;
    for (auto& s : src) {
      size_t n = rng() % 40;
      for (size_t i = 0; i < n; ++i) s.push_back(Rec(rng() % 30, rng() % 3, "r"));
      std::sort(s.begin(), s.end());
      s.erase(std::unique(s.begin(), s.end()), s.end());  // a source holds a record once
      if (desc) std::reverse(s.begin(), s.end());
      all.insert(all.end(), s.begin(), s.end());
    }
    std::sort(all.begin(), all.end());
    size_t total = all.size();
    all.erase(std::unique(all.begin(), all.end()), all.end());
    if (desc) std::reverse(all.begin(), all.end());
    MergeByUlid m(desc ? MergeByUlid::Order::kDescending : MergeByUlid::Order::kAscending);
    EXPECT_EQ(Drain(&m, src), all) << "round " << round;
    EXPECT_EQ(m.duplicates(), total - all.size());
  }
}

TEST(MergeByUlidTest, EqualKeysPopLowerSourceFirstInEitherOrder) {
  for (auto order : {MergeByUlid::Order::kAscending, MergeByUlid::Order::kDescending}) {
    MergeByUlid m(order);
    std::string r = Rec(5, 5, "same");
    m.Offer(2, r);
    m.Offer(0, r);
    m.Offer(1, r);
    EXPECT_EQ(m.Pop().source, 0u);
    EXPECT_EQ(m.Pop().source, 1u);
    EXPECT_EQ(m.Pop().source, 2u);
    EXPECT_TRUE(m.empty());
  }
}

TEST(MergeByUlidTest, KeysAreCopiedSoASourceMayReuseItsBuffer) {
  MergeByUlid m;
  std::string buf = Rec(9, 0, "late");
  m.Offer(0, buf);
  m.Offer(1, Rec(3, 0, "early"));
  buf.assign(1000, 'Z');  // the fan-out's network buffers grow and shift like this
  EXPECT_EQ(m.Pop().source, 1u);
  MergeByUlid::Head h = m.Pop();
  EXPECT_EQ(h.source, 0u);
  EXPECT_EQ(std::string(h.key, Ulid::kTextSize), Ulid::FromParts(9, 0, 0).ToString());
}

TEST(MergeByUlidTest, ShortLinesAreOrderedAndNeverTakenForDuplicates) {
  MergeByUlid m;
  m.Offer(0, Rec(1, 0, "a"));
  m.Offer(1, "x\n");  // a malformed peer line: zero-padded, sorts by its bytes
  m.Offer(2, "");
  EXPECT_EQ(m.Pop().source, 2u);
  EXPECT_EQ(m.Pop().source, 0u);
  EXPECT_EQ(m.Pop().source, 1u);
  EXPECT_TRUE(m.Accept("x\n"));
  EXPECT_TRUE(m.Accept("x\n"));
  EXPECT_TRUE(m.Accept(Rec(1, 0, "a")));
  EXPECT_FALSE(m.Accept(Rec(1, 0, "b")));  // same ULID, other text: still the same record
  EXPECT_EQ(m.duplicates(), 1u);
}

}  // namespace
}  // namespace oklog
