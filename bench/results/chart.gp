set terminal pngcairo size 1100,560 noenhanced font ',10'
set bmargin 7
set output 'chart.png'
set title 'taskyard / hand-written Asio baseline: median over runs, whiskers the range (lower is better; red: target)'
set style fill solid 0.6 border -1
set boxwidth 0.6
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set ylabel 'ratio'
set xtics rotate by -30
set grid ytics
set key off
plot 'chart.dat' using 0:2:xtic(1) with boxes lc rgb '#4477aa', \
     '' using 0:2:4:5 with yerrorbars pt 0 lc rgb 'black', \
     '' using 0:5:(sprintf('%.2f', $2)) with labels offset 0,0.7, \
     '' using 0:3:(0.35) with xerrorbars pt 0 lw 3 lc rgb '#cc3311', \
     1 with lines dt 2 lc rgb 'black'
