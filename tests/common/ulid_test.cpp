#include "common/ulid.h"

#include <gtest/gtest.h>

#include <set>

namespace oklog {
namespace {

TEST(UlidTest, EncodeParseRoundTrip) {
  for (int i = 0; i < 1000; ++i) {
    Ulid u = Ulid::FromParts(RandomU64() >> 16, static_cast<uint16_t>(RandomU64()), RandomU64());
    auto p = Ulid::Parse(u.ToString());
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(*p, u);
  }
}

TEST(UlidTest, KnownValue) {
  // The ULID spec: 1469918176385 ms encodes as 01ARYZ6S41.
  auto u = Ulid::Parse("01ARYZ6S41TSV4RRFFQ69G5FAV");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->unix_ms(), 1469918176385u);
  EXPECT_EQ(u->ToString(), "01ARYZ6S41TSV4RRFFQ69G5FAV");
}

TEST(UlidTest, TextOrderIsValueOrder) {
  Ulid a = Ulid::FromParts(1000, 5, 7), b = Ulid::FromParts(1000, 5, 8), c = Ulid::FromParts(1001, 0, 0);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_LT(a.ToString(), b.ToString());
  EXPECT_LT(b.ToString(), c.ToString());
}

TEST(UlidTest, RejectsBadInput) {
  EXPECT_FALSE(Ulid::Parse("").has_value());
  EXPECT_FALSE(Ulid::Parse("01ARZ3NDEKTSV4RRFFQ69G5FA").has_value());    // 25 chars
  EXPECT_FALSE(Ulid::Parse("01ARYZ6S41TSV4RRFFQ69G5FAVX").has_value());  // 27 chars
  EXPECT_FALSE(Ulid::Parse("01ARZ3NDEKTSV4RRFFQ69G5FA!").has_value());
  EXPECT_FALSE(Ulid::Parse("81ARZ3NDEKTSV4RRFFQ69G5FAV").has_value());  // overflows 128 bits
  EXPECT_FALSE(Ulid::Parse("01ARZ3NDEKTSV4RRFFQ69G5FUV").has_value());  // U is not Crockford
}

TEST(UlidTest, MinMaxAtBoundTheMillisecond) {
  Ulid lo = Ulid::MinAt(42), hi = Ulid::MaxAt(42);
  EXPECT_EQ(lo.unix_ms(), 42u);
  EXPECT_EQ(hi.unix_ms(), 42u);
  EXPECT_LT(lo, hi);
  EXPECT_LT(hi, Ulid::MinAt(43));
}

TEST(UlidStreamTest, StrictlyIncreasingEvenWhenClockStepsBack) {
  UlidStream s(7, 100);
  Ulid prev = s.Next(5000);
  for (uint64_t t : {5000u, 5001u, 4000u, 4000u, 6000u, 1u}) {
    Ulid u = s.Next(t);
    EXPECT_LT(prev, u);
    EXPECT_LT(prev.ToString(), u.ToString());
    prev = u;
  }
}

TEST(UlidTest, TimeBeyondTheLastMillisecondClampsInsteadOfWrapping) {
  EXPECT_EQ(Ulid::MaxAt(Ulid::kMaxUnixMs + 1), Ulid::Max());
  EXPECT_EQ(Ulid::MinAt(~uint64_t{0}).unix_ms(), Ulid::kMaxUnixMs);
  EXPECT_EQ(Ulid::FromParts(uint64_t{1} << 48, 3, 4), Ulid::FromParts(Ulid::kMaxUnixMs, 3, 4));
  EXPECT_EQ(Ulid::Max().ToString(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
}

TEST(UlidStreamTest, CounterCarriesIntoTheNextMillisecond) {
  UlidStream s(9, ~uint64_t{0} - 1);
  const Ulid a = s.Next(1000), b = s.Next(1000), c = s.Next(1000);
  EXPECT_EQ(a, Ulid::FromParts(1000, 9, ~uint64_t{0} - 1));
  EXPECT_EQ(b, Ulid::FromParts(1000, 9, ~uint64_t{0}));
  EXPECT_EQ(c, Ulid::FromParts(1001, 9, 0));
  EXPECT_FALSE(s.saturated());
}

TEST(UlidStreamTest, AStreamAtTheMaximumSaturatesAndNeverWrapsTo1970) {
  UlidStream s = UlidStream::At(Ulid::FromParts(Ulid::kMaxUnixMs, 0xFFFF, ~uint64_t{0} - 1));
  Ulid prev = s.Next(Ulid::kMaxUnixMs);
  EXPECT_EQ(s.Next(Ulid::kMaxUnixMs), Ulid::Max());
  EXPECT_FALSE(s.saturated());  // the last ULID was still a new one
  for (int i = 0; i < 3; ++i) {
    const Ulid u = s.Next(Ulid::kMaxUnixMs);
    EXPECT_EQ(u, Ulid::Max());
    EXPECT_EQ(u.unix_ms(), Ulid::kMaxUnixMs);
    EXPECT_GE(u, prev);
    prev = u;
  }
  EXPECT_TRUE(s.saturated());
  UlidStream wall(1, 0);
  EXPECT_EQ(wall.Next(~uint64_t{0}).unix_ms(), Ulid::kMaxUnixMs);  // a clock past the range clamps
}

TEST(UlidStreamTest, NextRunReservesExactlyWhatAStreamAtItsFirstIssues) {
  for (uint64_t start : {uint64_t{5}, ~uint64_t{0} - 2}) {  // the second run carries into 2001
    UlidStream forwarder(3, start), one_by_one(3, start);
    const Ulid first = forwarder.NextRun(2000, 5);
    UlidStream ingester = UlidStream::At(first);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(ingester.Next(first.unix_ms()), one_by_one.Next(2000)) << start;
    EXPECT_EQ(forwarder.Next(2000), one_by_one.Next(2000)) << start;  // the next id follows the run
  }
}

TEST(UlidStreamTest, RunFitsOnlyWhenEveryUlidOfTheRunExists) {
  const Ulid max = Ulid::Max();
  EXPECT_TRUE(UlidStream::RunFits(max, 1));
  EXPECT_FALSE(UlidStream::RunFits(max, 2));
  EXPECT_FALSE(UlidStream::RunFits(Ulid::FromParts(1000, 0, 0), 0));
  const Ulid near = Ulid::FromParts(Ulid::kMaxUnixMs, 7, ~uint64_t{0} - 9);
  EXPECT_TRUE(UlidStream::RunFits(near, 10));
  EXPECT_FALSE(UlidStream::RunFits(near, 11));
  // Anywhere before the last millisecond a run carries into the next one and fits.
  EXPECT_TRUE(UlidStream::RunFits(Ulid::FromParts(Ulid::kMaxUnixMs - 1, 0, ~uint64_t{0}), ~uint64_t{0}));
  // What fits is what a stream issues strictly increasing.
  UlidStream s = UlidStream::At(near);
  Ulid prev = s.Next(near.unix_ms());
  for (int i = 1; i < 10; ++i) {
    const Ulid u = s.Next(near.unix_ms());
    EXPECT_LT(prev, u);
    prev = u;
  }
  EXPECT_FALSE(s.saturated());
  s.Next(near.unix_ms());
  EXPECT_TRUE(s.saturated());
}

TEST(UlidStreamTest, DistinctStreamsDoNotCollide) {
  UlidStream a, b;
  std::set<Ulid> seen;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(seen.insert(a.Next(1)).second);
    EXPECT_TRUE(seen.insert(b.Next(1)).second);
  }
}

}  // namespace
}  // namespace oklog
