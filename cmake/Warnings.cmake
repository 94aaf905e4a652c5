# Warnings for our own targets only (generated protobuf-c code is built without them).
set(FD_WARNINGS -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wformat=2 -Wvla -Wno-unused-parameter)
if(FD_WERROR)
  list(APPEND FD_WARNINGS -Werror)
endif()

function(fd_target_warnings target)
  target_compile_options(${target} PRIVATE ${FD_WARNINGS})
endfunction()
