// Draws the meter page's readings with uPlot (vendored; see ../package.json). The data is in the
// page as JSON: [x (Unix seconds), one column per numeric property].
(function () {
  var holder = document.getElementById("chart");
  var source = document.getElementById("chart-data");
  if (!holder || !source || typeof uPlot === "undefined") return;
  var chart = JSON.parse(source.textContent);
  if (!chart.data[0].length) { holder.textContent = "No numeric reading in this range."; return; }
  var colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  var series = [{}].concat(chart.series.map(function (s, i) {
    return {label: s.label, stroke: colours[i % colours.length], width: 2,
            points: {show: true, size: 5, fill: colours[i % colours.length]}};
  }));
  var options = {width: Math.min(holder.clientWidth || 960, 1100), height: 360, series: series,
                 scales: {x: {time: true}}, axes: [{}, {size: 70}]};
  new uPlot(options, chart.data, holder);
  holder.setAttribute("data-drawn", String(chart.data[0].length));
})();
