(function () {
  var box = document.getElementById('filter');
  var status = document.getElementById('status');
  box.value = new URLSearchParams(location.search).get('q') || '';
  function apply() {
    var needle = box.value.trim().toLowerCase();
    var shown = 0, total = 0;
    document.querySelectorAll('#tables section').forEach(function (section) {
      var rows = section.querySelectorAll('tbody tr'), visible = 0;
      rows.forEach(function (row) {
        var hit = needle === '' || row.getAttribute('data-name').indexOf(needle) >= 0;
        row.hidden = !hit;
        if (hit) visible++;
      });
      var count = section.querySelector('.count');
      if (count) count.textContent = needle === '' ? '(' + rows.length + ')' : '(' + visible + ' of ' + rows.length + ')';
      shown += visible; total += rows.length;
    });
    box.setAttribute('data-shown', shown);
    var url = new URL(location.href);
    if (box.value.trim() === '') url.searchParams.delete('q'); else url.searchParams.set('q', box.value);
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  function refresh() {
    fetch(location.pathname, {cache: 'no-store'}).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.text();
    }).then(function (text) {
      var page = new DOMParser().parseFromString(text, 'text/html');
      ['tables', 'facts'].forEach(function (id) {
        var fresh = page.getElementById(id);
        if (fresh) document.getElementById(id).replaceWith(fresh);
      });
      document.title = page.title;
      apply();
      status.textContent = 'updated ' + new Date().toLocaleTimeString();
    }).catch(function () {
      status.textContent = 'server unreachable, retrying';
    });
  }
  box.addEventListener('input', apply);
  apply();
  status.textContent = 'live, refreshes every REFRESH_SECSs';
  setInterval(refresh, REFRESH_SECS * 1000);
})();
