// switchboard console: small enhancements; every page works without them.
'use strict';

(function () {
  const token = document.querySelector('meta[name="csrf-token"]');
  const banner = document.getElementById('pending');
  if (!banner || !token) return;

  // A revision is on trial. Count down, and confirm it from here: while a
  // revision is pending the console closes every connection after its
  // answer, so this request travels over a new connection, through the
  // new firewall rules. If it cannot get through, nothing confirms and the
  // appliance rolls back at the deadline.
  const state = document.getElementById('pending-state');
  const countdown = document.getElementById('countdown');
  let left = parseInt(banner.dataset.seconds, 10) || 0;
  let done = false;

  const tick = setInterval(function () {
    if (done) return;
    left = Math.max(0, left - 1);
    countdown.textContent = String(left);
    if (left === 0) {
      clearInterval(tick);
      state.textContent = 'Not confirmed: the appliance rolls the change back.';
    }
  }, 1000);

  function attempt() {
    if (done || left <= 0) return;
    fetch('/v1/confirm', {
      method: 'POST',
      headers: { 'X-CSRF-Token': token.content },
      cache: 'no-store',
      credentials: 'same-origin',
    }).then(function (response) {
      if (response.ok) {
        return response.json().then(function (body) {
          done = true;
          clearInterval(tick);
          banner.classList.add('confirmed');
          banner.innerHTML = '';
          const p = document.createElement('p');
          p.id = 'confirmed';
          p.textContent = 'Revision ' + body.revision + ' confirmed: your browser still reaches the console.';
          banner.appendChild(p);
        });
      }
      return response.json().then(function (body) {
        const code = body && body.error ? body.error.code : '';
        if (code === 'nothing-pending') {
          // Confirmed elsewhere, or rolled back.
          done = true;
          state.textContent = 'Nothing is pending any more; reload the page.';
          return;
        }
        // E.g. confirm-over-new-connection: that connection is closed now,
        // the next try opens a new one.
        setTimeout(attempt, 1000);
      }, function () {
        setTimeout(attempt, 2000);
      });
    }).catch(function () {
      state.textContent = 'The console cannot be reached over a new connection; retrying. Without a confirmation the appliance rolls back.';
      setTimeout(attempt, 2000);
    });
  }
  // Let the old connection close first.
  setTimeout(attempt, 1500);
})();

// What was typed into a form is kept in this tab while it is sent, and
// given back when the page after it says so (`data-restore`): after a
// failed action, and after signing in again when the session had ended.
// Never a password, a file, the CSRF token or a confirmation.
(function () {
  const KEY = 'switchboard-form';
  const kept = function (el) {
    return el.name && !['password', 'file', 'hidden', 'submit', 'button'].includes(el.type);
  };
  document.addEventListener('submit', function (event) {
    const form = event.target;
    if (!form.id || form.method.toLowerCase() !== 'post') return;
    const fields = [];
    for (const el of form.elements) {
      if (!kept(el)) continue;
      if (el.type === 'checkbox' || el.type === 'radio') {
        fields.push([el.name, el.value, el.checked]);
      } else {
        fields.push([el.name, el.value, true]);
      }
    }
    try {
      sessionStorage.setItem(KEY, JSON.stringify({ id: form.id, fields: fields }));
    } catch (e) { /* storage refused: nothing is kept */ }
  }, true);

  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(KEY) || 'null'); } catch (e) { saved = null; }
  const flash = document.querySelector('[data-restore]');
  const form = saved && document.getElementById(saved.id);
  // The form just sent (the storage holds only that one: it is cleared on
  // every other page).
  if (flash && form) {
    const byName = {};
    for (const el of form.elements) {
      if (kept(el)) (byName[el.name] = byName[el.name] || []).push(el);
    }
    for (const [name, value, on] of saved.fields) {
      for (const el of byName[name] || []) {
        if (el.type === 'checkbox' || el.type === 'radio') {
          if (el.value === value) el.checked = on;
        } else {
          el.value = value;
        }
      }
    }
  }
  if (!document.querySelector('.login-page')) sessionStorage.removeItem(KEY);
})();

// "Select every account of this page".
(function () {
  const all = document.getElementById('select-page');
  if (!all) return;
  all.hidden = false;
  all.addEventListener('change', function () {
    for (const box of document.querySelectorAll('input[name="u"]')) box.checked = all.checked;
  });
})();
