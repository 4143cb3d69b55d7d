# $prefix: where taskyard was installed (cmake --install <build dir> --prefix "$prefix").
export PKG_CONFIG_PATH="$prefix/share/pkgconfig"
${CXX:-c++} $(pkg-config --cflags taskyard) main.cpp -o consumer $(pkg-config --libs taskyard)
./consumer
