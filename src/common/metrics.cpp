#include "common/metrics.h"

#include <cmath>
#include <cstdio>
#include <variant>

namespace oklog {

void Gauge::Add(double d) {
  double cur = v_.load(std::memory_order_relaxed);
  while (!v_.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double cur = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += buckets_[i].load(std::memory_order_relaxed);
    out[i] = acc;
  }
  return out;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> b;
  for (int i = 0; i < count; ++i, start *= factor) b.push_back(start);
  return b;
}

std::vector<double> DefaultLatencyBuckets() { return ExponentialBuckets(0.0005, 2, 15); }

template <typename M>
M* Family<M>::With(const std::vector<std::string>& label_values) {
  std::lock_guard<std::mutex> lock(*mu_);
  auto& slot = children_[label_values];
  if (!slot) slot = make_();
  return slot.get();
}
template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

struct Registry::Entry {
  std::string help;
  std::string type;
  std::variant<std::monostate, std::unique_ptr<Counter>, std::unique_ptr<Gauge>, std::unique_ptr<Histogram>,
               std::unique_ptr<Family<Counter>>, std::unique_ptr<Family<Gauge>>, std::unique_ptr<Family<Histogram>>>
      metric;
  std::map<const void*, std::function<double()>> callbacks;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Entry& Registry::Slot(const std::string& name, const std::string& help, const char* type) {
  auto& e = entries_[name];
  if (!e) {
    e = std::make_unique<Entry>();
    e->help = help;
    e->type = type;
  }
  return *e;
}

Counter* Registry::NewCounter(const std::string& name, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = Slot(name, help, "counter");
  if (!std::holds_alternative<std::unique_ptr<Counter>>(e.metric)) e.metric = std::make_unique<Counter>();
  return std::get<std::unique_ptr<Counter>>(e.metric).get();
}

Gauge* Registry::NewGauge(const std::string& name, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = Slot(name, help, "gauge");
  if (!std::holds_alternative<std::unique_ptr<Gauge>>(e.metric)) e.metric = std::make_unique<Gauge>();
  return std::get<std::unique_ptr<Gauge>>(e.metric).get();
}

Histogram* Registry::NewHistogram(const std::string& name, const std::string& help, std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = Slot(name, help, "histogram");
  if (!std::holds_alternative<std::unique_ptr<Histogram>>(e.metric))
    e.metric = std::make_unique<Histogram>(std::move(bounds));
  return std::get<std::unique_ptr<Histogram>>(e.metric).get();
}

// Families share the registry mutex for child creation; rendering holds it too.
Family<Counter>* Registry::NewCounterFamily(const std::string& name, const std::string& help,
                                            std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = Slot(name, help, "counter");
  if (!std::holds_alternative<std::unique_ptr<Family<Counter>>>(e.metric)) e.metric = std::unique_ptr<Family<Counter>>();
  auto& slot = std::get<std::unique_ptr<Family<Counter>>>(e.metric);
  if (!slot) {
    slot = std::make_unique<Family<Counter>>();
    slot->make_ = [] { return std::make_unique<Counter>(); };
    slot->label_names_ = std::move(label_names);
    slot->mu_ = &mu_;
  }
  return slot.get();
}

Family<Gauge>* Registry::NewGaugeFamily(const std::string& name, const std::string& help,
                                        std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = Slot(name, help, "gauge");
  if (!std::holds_alternative<std::unique_ptr<Family<Gauge>>>(e.metric)) e.metric = std::unique_ptr<Family<Gauge>>();
  auto& slot = std::get<std::unique_ptr<Family<Gauge>>>(e.metric);
  if (!slot) {
    slot = std::make_unique<Family<Gauge>>();
    slot->make_ = [] { return std::make_unique<Gauge>(); };
    slot->label_names_ = std::move(label_names);
    slot->mu_ = &mu_;
  }
  return slot.get();
}

Family<Histogram>* Registry::NewHistogramFamily(const std::string& name, const std::string& help,
                                                std::vector<std::string> label_names, std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = Slot(name, help, "histogram");
  if (!std::holds_alternative<std::unique_ptr<Family<Histogram>>>(e.metric))
    e.metric = std::unique_ptr<Family<Histogram>>();
  auto& slot = std::get<std::unique_ptr<Family<Histogram>>>(e.metric);
  if (!slot) {
    slot = std::make_unique<Family<Histogram>>();
    slot->make_ = [bounds] { return std::make_unique<Histogram>(bounds); };
    slot->label_names_ = std::move(label_names);
    slot->mu_ = &mu_;
  }
  return slot.get();
}

void Registry::NewGaugeCallback(const std::string& name, const std::string& help, const void* owner,
                                std::function<double()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = Slot(name, help, "gauge");
  e.callbacks[owner] = std::move(fn);
}

void Registry::RemoveCallbacks(const void* owner) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, e] : entries_) e->callbacks.erase(owner);
}

namespace {

std::string FormatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.9g", v);
  }
  return buf;
}

std::string EscapeLabel(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Labels(const std::vector<std::string>& names, const std::vector<std::string>& values,
                   const std::string& extra = "") {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (!out.empty()) out += ',';
    out += names[i] + "=\"" + EscapeLabel(values[i]) + "\"";
  }
  if (!extra.empty()) {
    if (!out.empty()) out += ',';
    out += extra;
  }
  return out.empty() ? "" : "{" + out + "}";
}

void RenderHistogram(std::string& out, const std::string& name, const Histogram& h,
                     const std::vector<std::string>& names, const std::vector<std::string>& values) {
  auto counts = h.CumulativeCounts();
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    out += name + "_bucket" + Labels(names, values, "le=\"" + FormatValue(h.bounds()[i]) + "\"") + " " +
           std::to_string(counts[i]) + "\n";
  }
  out += name + "_bucket" + Labels(names, values, "le=\"+Inf\"") + " " + std::to_string(counts.back()) + "\n";
  out += name + "_sum" + Labels(names, values) + " " + FormatValue(h.Sum()) + "\n";
  out += name + "_count" + Labels(names, values) + " " + std::to_string(h.Count()) + "\n";
}

}  // namespace

std::string Registry::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& entry : entries_) {
    // Named references, not a structured binding: the lambda below uses them, and clang 14
    // cannot capture structured bindings (C++20 P1091).
    const std::string& name = entry.first;
    const auto& e = entry.second;
    out += "# HELP " + name + " " + e->help + "\n";
    out += "# TYPE " + name + " " + e->type + "\n";
    std::visit(
        [&](const auto& m) {
          using T = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<T, std::unique_ptr<Counter>>) {
            out += name + " " + std::to_string(m->Value()) + "\n";
          } else if constexpr (std::is_same_v<T, std::unique_ptr<Gauge>>) {
            out += name + " " + FormatValue(m->Value()) + "\n";
          } else if constexpr (std::is_same_v<T, std::unique_ptr<Histogram>>) {
            RenderHistogram(out, name, *m, {}, {});
          } else if constexpr (std::is_same_v<T, std::unique_ptr<Family<Counter>>>) {
            if (m)
              for (const auto& [vals, c] : m->children_)
                out += name + Labels(m->label_names_, vals) + " " + std::to_string(c->Value()) + "\n";
          } else if constexpr (std::is_same_v<T, std::unique_ptr<Family<Gauge>>>) {
            if (m)
              for (const auto& [vals, g] : m->children_)
                out += name + Labels(m->label_names_, vals) + " " + FormatValue(g->Value()) + "\n";
          } else if constexpr (std::is_same_v<T, std::unique_ptr<Family<Histogram>>>) {
            if (m)
              for (const auto& [vals, h] : m->children_) RenderHistogram(out, name, *h, m->label_names_, vals);
          }
        },
        e->metric);
    // Callback gauges: the sum over owners (one owner per node in practice).
    if (!e->callbacks.empty()) {
      double sum = 0;
      for (const auto& [owner, fn] : e->callbacks) sum += fn();
      out += name + " " + FormatValue(sum) + "\n";
    }
  }
  return out;
}

}  // namespace oklog
