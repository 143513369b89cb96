/* Autocomplete for the search box: titles from GET /api/v1/search/suggest while the teacher
   types, pinyin included (fensh, fen sh and peif find 分数 and 配方法 titles).

   An enhancement only: the box is a plain GET form that searches without this script, and a
   failed or slow request just shows no list. The list is an ARIA 1.2 combobox's listbox
   (arrow keys move, Enter picks, Escape closes), not a <datalist>: browsers filter a datalist's
   options by the letters typed, which would hide 分数的意义 from "fensh". It has no words of its
   own; its label comes from the page (data-suggest-label). */
(function () {
  'use strict';

  var PAUSE_MS = 200; // one request per pause in typing, not per key, on a slow link
  var LIMIT = 8;

  function setup(input, n) {
    var api = input.getAttribute('data-suggest');
    var form = input.form;
    if (!api || !form || !window.fetch) {
      return;
    }
    var label = input.closest('label') || input;
    var list = document.createElement('ul');
    list.id = 'suggestions-' + n;
    list.className = 'suggestions';
    list.setAttribute('role', 'listbox');
    list.setAttribute('aria-label', input.getAttribute('data-suggest-label') || '');
    list.hidden = true;
    label.parentNode.insertBefore(list, label.nextSibling);
    input.setAttribute('role', 'combobox');
    input.setAttribute('aria-autocomplete', 'list');
    input.setAttribute('aria-controls', list.id);
    input.setAttribute('aria-expanded', 'false');
    input.setAttribute('autocomplete', 'off');

    var timer = null;
    var asked = 0; // answers to older requests than the latest are dropped
    var active = -1;
    var titles = [];

    function close() {
      list.hidden = true;
      input.setAttribute('aria-expanded', 'false');
      input.removeAttribute('aria-activedescendant');
      active = -1;
    }

    function show(found) {
      titles = found;
      list.textContent = '';
      active = -1;
      input.removeAttribute('aria-activedescendant');
      found.forEach(function (title, i) {
        var option = document.createElement('li');
        option.id = list.id + '-' + i;
        option.setAttribute('role', 'option');
        option.setAttribute('aria-selected', 'false');
        option.textContent = title;
        // mousedown, not click: it comes before the box loses focus (which closes the list).
        option.addEventListener('mousedown', function (event) {
          event.preventDefault();
          pick(i);
        });
        list.appendChild(option);
      });
      if (found.length) {
        list.hidden = false;
        input.setAttribute('aria-expanded', 'true');
      } else {
        close();
      }
    }

    function mark(i) {
      var options = list.children;
      for (var k = 0; k < options.length; k++) {
        options[k].setAttribute('aria-selected', k === i ? 'true' : 'false');
      }
      active = i;
      if (i >= 0) {
        input.setAttribute('aria-activedescendant', options[i].id);
        options[i].scrollIntoView({block: 'nearest'});
      } else {
        input.removeAttribute('aria-activedescendant');
      }
    }

    function pick(i) {
      input.value = titles[i];
      close();
      form.submit();
    }

    function ask() {
      var q = input.value.trim();
      var mine = ++asked;
      if (!q) {
        close();
        return;
      }
      fetch(api + '?limit=' + LIMIT + '&q=' + encodeURIComponent(q), {headers: {Accept: 'application/json'}})
        .then(function (response) {
          return response.ok ? response.json() : {suggestions: []};
        })
        .then(function (body) {
          if (mine !== asked || document.activeElement !== input) {
            return;
          }
          var seen = {};
          show(
            body.suggestions
              .map(function (s) {
                return s.title;
              })
              .filter(function (title) {
                return seen[title] ? false : (seen[title] = true);
              })
          );
        })
        .catch(function () {
          if (mine === asked) {
            close();
          }
        });
    }

    input.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(ask, PAUSE_MS);
    });
    input.addEventListener('keydown', function (event) {
      if (list.hidden) {
        return;
      }
      var count = list.children.length;
      if (event.key === 'ArrowDown') {
        event.preventDefault();
        mark((active + 1) % count);
      } else if (event.key === 'ArrowUp') {
        event.preventDefault();
        mark(active <= 0 ? count - 1 : active - 1);
      } else if (event.key === 'Enter' && active >= 0) {
        event.preventDefault();
        pick(active);
      } else if (event.key === 'Escape') {
        event.preventDefault();
        close();
      }
    });
    input.addEventListener('blur', close);
  }

  var boxes = document.querySelectorAll('input[data-suggest]');
  for (var i = 0; i < boxes.length; i++) {
    setup(boxes[i], i);
  }
})();
