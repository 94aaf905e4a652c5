# FD_SANITIZE=ON: AddressSanitizer + UndefinedBehaviorSanitizer on every target,
# stopping at the first report.
if(FD_SANITIZE)
  set(FD_SAN_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_compile_options(${FD_SAN_FLAGS})
  add_link_options(${FD_SAN_FLAGS})
endif()
