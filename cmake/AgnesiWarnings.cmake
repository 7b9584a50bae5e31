# One place for the compiler warnings of every Agnesi target.
function(agnesi_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror
    # GCC 12 at -O3 reports overreads and overlaps inside std::string and small_vector copies
    # that cannot happen (sizes are checked first): known false positives of that release.
    $<$<CXX_COMPILER_ID:GNU>:-Wno-stringop-overread -Wno-array-bounds -Wno-stringop-overflow
                             -Wno-restrict>)
  # With the sanitizers' instrumentation GCC 12 also sees uninitialized reads inside
  # std::function copies made by <regex> (another false positive of that release).
  if(AGNESI_SANITIZE)
    target_compile_options(${target} PRIVATE
      $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
  endif()
endfunction()
