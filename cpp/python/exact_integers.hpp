// Integer arrays that arrive exactly.  numpy's unsafe cast, which a plain
// forcecast array_t uses, would wrap values the element type cannot hold
// (257 as uint8 is 1) and truncate fractions (0.9 is 0); such arrays are
// refused instead.  Conversions only, no logic.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <string>
#include <utility>

namespace heteroagg::bindings {

namespace py = pybind11;

// The array itself is reached through the conversion or the accessors; a
// wrapper rather than a subclass, so that pybind11's caster of Python objects
// does not claim it.
template <class T>
class exact_integers {
 public:
  using array = py::array_t<T, py::array::c_style | py::array::forcecast>;
  exact_integers() = default;
  explicit exact_integers(array values) : values_(std::move(values)) {}
  operator const array&() const { return values_; }
  const array& get() const { return values_; }
  const T* data() const { return values_.data(); }
  py::ssize_t ndim() const { return values_.ndim(); }
  py::ssize_t shape(py::ssize_t axis) const { return values_.shape(axis); }
  py::ssize_t size() const { return values_.size(); }

 private:
  array values_;
};

}  // namespace heteroagg::bindings

namespace pybind11::detail {

template <class T>
struct type_caster<heteroagg::bindings::exact_integers<T>> {
  using value_type = heteroagg::bindings::exact_integers<T>;
  PYBIND11_TYPE_CASTER(value_type, const_name("numpy.ndarray[int]"));

  bool load(handle source, bool convert) {
    // an array of T already is exact: only conversions are compared, off the hot path
    const bool already = value_type::array::check_(source);
    if (!convert && !already) return false;
    auto cast = value_type::array::ensure(source);
    if (!cast) return false;
    if (!already && !module_::import("numpy").attr("array_equal")(cast, source).template cast<bool>())
      throw value_error("integer arrays must hold whole numbers in [" +
                        std::to_string(+std::numeric_limits<T>::min()) + ", " +
                        std::to_string(+std::numeric_limits<T>::max()) + "]");
    value = value_type(std::move(cast));
    return true;
  }

  static handle cast(const value_type& source, return_value_policy, handle) {
    return source.get().inc_ref();
  }
};

}  // namespace pybind11::detail
