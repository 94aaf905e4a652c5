# Warnings for our own targets only (generated protobuf-c code is built without them).
# -Wno-missing-field-initializers: trailing fields left out of a positional
# initializer are zero by the standard, and statements are declared that way
# ({ name, text, nparams } with flags 0 unless a statement says otherwise).
set(FD_WARNINGS -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wformat=2 -Wvla -Wno-unused-parameter -Wno-missing-field-initializers)
if(FD_WERROR)
  list(APPEND FD_WARNINGS -Werror)
endif()

function(fd_target_warnings target)
  target_compile_options(${target} PRIVATE ${FD_WARNINGS})
endfunction()
