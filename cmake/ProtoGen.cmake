# Generate protobuf-c sources (and a descriptor set for reflection) into the
# build folder. Nothing generated is written to the source tree.
find_program(PROTOC_C protoc-c REQUIRED)
find_program(PROTOC protoc REQUIRED)

# fd_protobuf_c(OUT_SRCS <var> ROOT <import root> PROTOS <relative paths...>)
# Appends the generated .pb-c.c files to <var>; headers land in
# ${CMAKE_BINARY_DIR}/gen/<relative path>.pb-c.h.
function(fd_protobuf_c)
  cmake_parse_arguments(A "" "OUT_SRCS;ROOT" "PROTOS;IMPORTS" ${ARGN})
  set(gen ${CMAKE_BINARY_DIR}/gen)
  set(srcs)
  set(import_flags)
  foreach(i ${A_IMPORTS})
    list(APPEND import_flags -I${i})
  endforeach()
  foreach(p ${A_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" base ${p})
    set(c ${gen}/${base}.pb-c.c)
    set(h ${gen}/${base}.pb-c.h)
    add_custom_command(
      OUTPUT ${c} ${h}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${gen}
      COMMAND ${PROTOC_C} -I${A_ROOT} ${import_flags} --c_out=${gen} ${A_ROOT}/${p}
      DEPENDS ${A_ROOT}/${p}
      COMMENT "protoc-c ${p}"
      VERBATIM)
    list(APPEND srcs ${c})
  endforeach()
  set(${A_OUT_SRCS} ${${A_OUT_SRCS}} ${srcs} PARENT_SCOPE)
endfunction()
