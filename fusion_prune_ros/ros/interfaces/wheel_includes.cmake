# Loaded with -DCMAKE_PROJECT_INCLUDE by build.py, so the package CMakeLists.txt files stay as upstream has them.
#
# The PyPI ROS wheels were built in a manylinux container, and their exported `<pkg>__rosidl_generator_py`
# targets still name that container's Python and NumPy headers (/opt/python/...). Those paths do not exist
# here, and CMake refuses to generate with an imported target that names a missing include directory.
# The targets appear only once the project has called find_package, so the fix is deferred to the end of the
# directory: there, each such path is swapped for this interpreter's include directories, which build.py
# passes in FUSION_PRUNE_PYTHON_INCLUDE_DIRS.
function(fusion_prune_fix_wheel_includes)
  get_directory_property(targets IMPORTED_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(dirs MATCHES "(^|;)/opt/python/")
      list(FILTER dirs EXCLUDE REGEX "^/opt/python/")
      list(APPEND dirs ${FUSION_PRUNE_PYTHON_INCLUDE_DIRS})
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${dirs}")
    endif()
  endforeach()
endfunction()
cmake_language(DEFER CALL fusion_prune_fix_wheel_includes)
