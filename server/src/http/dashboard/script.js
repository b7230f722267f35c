(function () {
  var box = document.getElementById('filter');
  var status = document.getElementById('status');
  var params = new URLSearchParams(location.search);
  box.value = params.get('q') || '';
  var page = params.get('page') || '';
  // The selection is the server's: kept as it came (host= with an empty value is a selection).
  var host = params.has('host') ? params.get('host') : null;
  var matches = params.getAll('match');
  var typing = null;
  // A large selection is paged by the server, which also applies the filter; a small one is
  // sent whole and filtered here as the operator types.
  function paged() { return document.getElementById('tables').hasAttribute('data-paged'); }
  function search() {
    var query = new URLSearchParams();
    if (box.value.trim() !== '') query.set('q', box.value);
    if (host !== null) query.set('host', host);
    matches.forEach(function (m) { query.append('match', m); });
    if (page !== '' && page !== '1') query.set('page', page);
    var text = query.toString();
    return text === '' ? '' : '?' + text;
  }
  function apply() {
    var needle = box.value.trim().toLowerCase();
    var shown = 0;
    document.querySelectorAll('#tables section').forEach(function (section) {
      var rows = section.querySelectorAll('tbody tr'), visible = 0;
      if (paged()) { shown += rows.length; return; }
      rows.forEach(function (row) {
        var hit = needle === '' || row.getAttribute('data-name').indexOf(needle) >= 0;
        row.hidden = !hit;
        if (hit) visible++;
      });
      var count = section.querySelector('.count');
      if (count) count.textContent = needle === '' ? '(' + rows.length + ')' : '(' + visible + ' of ' + rows.length + ')';
      shown += visible;
    });
    box.setAttribute('data-shown', shown);
    // The host links keep the filter as typed (they navigate: no script needed to follow them).
    document.querySelectorAll('#hosts a').forEach(function (a) {
      var link = new URLSearchParams(a.search);
      if (box.value.trim() !== '') link.set('q', box.value); else link.delete('q');
      var text = link.toString();
      a.search = text === '' ? '' : '?' + text;
    });
    history.replaceState(null, '', location.pathname + search() + location.hash);
  }
  function refresh() {
    fetch(location.pathname + search(), {cache: 'no-store'}).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.text();
    }).then(function (text) {
      var doc = new DOMParser().parseFromString(text, 'text/html');
      ['tables', 'facts', 'hosts'].forEach(function (id) {
        var fresh = doc.getElementById(id);
        if (fresh) document.getElementById(id).replaceWith(fresh);
      });
      // The server says which page it showed (a page past the last is the last).
      var shownPage = document.getElementById('tables').getAttribute('data-page');
      page = shownPage && shownPage !== '1' ? shownPage : '';
      document.title = doc.title;
      apply();
      status.textContent = 'updated ' + new Date().toLocaleTimeString();
    }).catch(function () {
      status.textContent = 'server unreachable, retrying';
    });
  }
  box.form.addEventListener('submit', function (e) {
    e.preventDefault();
    if (paged()) { page = ''; clearTimeout(typing); refresh(); }
  });
  box.addEventListener('input', function () {
    if (!paged()) { apply(); return; }
    page = '';
    clearTimeout(typing);
    typing = setTimeout(refresh, 300);
  });
  apply();
  status.textContent = 'live, refreshes every REFRESH_SECSs';
  setInterval(refresh, REFRESH_SECS * 1000);
})();
