"""Listing: filters, search, the six sorts, limits, keyset pages and meta"""

from datetime import timedelta

import pytest
from helpers import EPOCH, TIME, create, insert, rows

from todo import roundtrip
from todo.schemas import SORTS

LIST = "/api/alice/tasks"
LIMIT = "Must be greater than or equal to 1 and less than or equal to 1000."
NOT_AN_INTEGER = "Not a valid integer."
SORT = "Must be one of: -created_at, created_at, -updated_at, updated_at, title, -title."


def titles(response):
    assert response.status_code == 200, response.json
    return [task["title"] for task in response.json["data"]]


def walk(client, limit, **params):
    """Every page of a listing; returns (ids in order, the pages' responses)."""
    ids, pages, cursor = [], [], None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get(LIST, query_string=query)
        assert response.status_code == 200, response.json
        pages.append(response)
        ids += [task["id"] for task in response.json["data"]]
        cursor = response.json["meta"]["next_cursor"]
        if cursor is None:
            return ids, pages
        assert len(pages) < 100, "paging does not end"


def expected_order(app, sort, user="alice"):
    """Ids as the contract orders them: the sort key, ties broken by id."""
    key = sort.lstrip("-")
    column = "title_lower" if key == "title" else key
    ordered = sorted(
        rows(app, user), key=lambda r: (r[column], r["id"]), reverse=sort.startswith("-")
    )
    return [str(r["id"]) for r in ordered]


def test_empty_list(alice):
    response = alice.get(LIST)

    assert response.status_code == 200
    assert response.json["data"] == []
    meta = response.json["meta"]
    assert TIME.match(meta.pop("timestamp"))
    assert meta == {
        "request_id": response.headers["X-Request-ID"],
        "count": 0,
        "limit": 100,
        "next_cursor": None,
        "total": 0,
    }


def test_list_shows_only_the_users_tasks_newest_first(alice, bob):
    create(alice, title="one")
    create(bob, user="bob", title="bob's")
    create(alice, title="two")

    response = alice.get(LIST)

    assert titles(response) == ["two", "one"]
    assert response.json["data"][0]["user_id"] == "alice"
    assert response.json["meta"]["total"] == 2


def test_status_filters(alice):
    create(alice, title="open")
    create(alice, title="done", is_completed=True)

    assert titles(alice.get(LIST, query_string={"status": "all"})) == ["done", "open"]
    assert titles(alice.get(LIST, query_string={"status": "pending"})) == ["open"]
    completed = alice.get(LIST, query_string={"status": "completed"})
    assert titles(completed) == ["done"]
    assert completed.json["meta"]["total"] == 1


def test_q_is_a_case_insensitive_substring_of_the_title(app, alice):
    insert(app, titles=["Buy MILK", "milkshake", "Almond Milk", "bread"], step=timedelta(1))

    assert titles(alice.get(LIST, query_string={"q": "mIlK"})) == [
        "Almond Milk",
        "milkshake",
        "Buy MILK",
    ]
    assert titles(alice.get(LIST, query_string={"q": "xyz"})) == []


def test_q_matches_non_ascii_case_insensitively(app, alice):
    insert(app, titles=["Éclair au café", "eclair", "İstanbul trip"], step=timedelta(1))

    assert titles(alice.get(LIST, query_string={"q": "éCLAIR"})) == ["Éclair au café"]
    assert titles(alice.get(LIST, query_string={"q": "CAFÉ"})) == ["Éclair au café"]
    assert titles(alice.get(LIST, query_string={"q": "İstanbul"})) == ["İstanbul trip"]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("%", ["100% done"]),
        ("_", ["a_b"]),
        ("a_b", ["a_b"]),
        ("0%", ["100% done"]),
        ("\\", ["back\\slash"]),
        ("/", ["slash/ed"]),
    ],
)
def test_q_wildcards_match_literally(app, alice, q, expected):
    insert(app, titles=["100% done", "1000 done", "a_b", "axb", "back\\slash", "slash/ed"])

    assert titles(alice.get(LIST, query_string={"q": q})) == expected


def test_q_and_status_together_and_total_counts_matches(app, alice):
    create(alice, title="milk 1")
    create(alice, title="milk 2", is_completed=True)
    create(alice, title="bread", is_completed=True)

    response = alice.get(LIST, query_string={"q": "milk", "status": "completed"})

    assert titles(response) == ["milk 2"]
    assert response.json["meta"]["total"] == 1


def test_the_six_sorts(alice):
    # created in this order; then "Apple" is updated, so it is the most recent update
    banana = create(alice, title="banana")
    cherry = create(alice, title="Cherry")
    apple = create(alice, title="Apple")
    alice.put(f"{LIST}/{banana['id']}", json={"title": "banana", "description": "ripe"})
    alice.put(f"{LIST}/{cherry['id']}", json={"title": "Cherry", "description": "red"})
    alice.put(f"{LIST}/{apple['id']}", json={"title": "Apple", "description": "green"})
    alice.put(f"{LIST}/{banana['id']}", json={"title": "banana", "description": "yellow"})

    def order(sort):
        return titles(alice.get(LIST, query_string={"sort": sort}))

    assert order("created_at") == ["banana", "Cherry", "Apple"]
    assert order("-created_at") == ["Apple", "Cherry", "banana"]
    assert order("updated_at") == ["Cherry", "Apple", "banana"]
    assert order("-updated_at") == ["banana", "Apple", "Cherry"]
    assert order("title") == ["Apple", "banana", "Cherry"]
    assert order("-title") == ["Cherry", "banana", "Apple"]
    assert titles(alice.get(LIST)) == order("-created_at")


def test_title_order_is_by_lowercased_code_point_on_every_backend(app, alice):
    insert(app, titles=["Éclair", "zebra", "Ångström", "apple", "Zoo", "éa", "ZEBRA!"])

    assert titles(alice.get(LIST, query_string={"sort": "title"})) == [
        "apple",
        "zebra",
        "ZEBRA!",
        "Zoo",
        "Ångström",
        "éa",
        "Éclair",
    ]


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("0", LIMIT),
        ("1001", LIMIT),
        ("-1", LIMIT),
        ("abc", NOT_AN_INTEGER),
        ("1.5", NOT_AN_INTEGER),
        ("", NOT_AN_INTEGER),
        ("+5", NOT_AN_INTEGER),
        (" 5", NOT_AN_INTEGER),
        ("5 ", NOT_AN_INTEGER),
        ("1_0", NOT_AN_INTEGER),
        ("\u0663", NOT_AN_INTEGER),  # ARABIC-INDIC DIGIT THREE
        ("\uff15", NOT_AN_INTEGER),  # FULLWIDTH DIGIT FIVE
        ("5\n", NOT_AN_INTEGER),
    ],
)
def test_limit_out_of_bounds_is_400(alice, limit, message):
    response = alice.get(LIST, query_string={"limit": limit})

    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == {"query": {"limit": [message]}}


def test_limit_bounds_and_default(app, alice):
    insert(app, titles=[f"t{n}" for n in range(1001)], step=timedelta(seconds=1))

    default = alice.get(LIST)
    assert default.json["meta"]["count"] == 100
    assert default.json["meta"]["limit"] == 100
    assert default.json["meta"]["total"] == 1001
    assert default.json["meta"]["next_cursor"]
    one = alice.get(LIST, query_string={"limit": 1})
    assert titles(one) == ["t1000"]
    assert one.json["meta"]["count"] == 1
    thousand = alice.get(LIST, query_string={"limit": 1000})
    assert thousand.json["meta"]["count"] == 1000
    assert thousand.json["meta"]["limit"] == 1000
    last = alice.get(
        LIST, query_string={"limit": 1000, "cursor": thousand.json["meta"]["next_cursor"]}
    )
    assert titles(last) == ["t0"]
    assert last.json["meta"]["next_cursor"] is None
    padded = alice.get(LIST, query_string={"limit": "007"})
    assert padded.json["meta"]["limit"] == padded.json["meta"]["count"] == 7


@pytest.mark.parametrize("sort", SORTS)
def test_walking_pages_visits_every_task_once_despite_ties(app, alice, sort):
    # Ties everywhere: 7 share one instant, 6 another; titles repeat across case.
    names = ["b", "B", "a", "A", "c", "b", "a"]
    insert(app, titles=names)
    insert(app, titles=["B", "d", "D", "a", "c", "C"], created_at=EPOCH + timedelta(hours=1))
    insert(app, user="bob", titles=names)

    ids, pages = walk(alice, 3, sort=sort)

    assert ids == expected_order(app, sort)
    assert len(set(ids)) == 13
    assert [page.json["meta"]["count"] for page in pages] == [3, 3, 3, 3, 1]
    assert {page.json["meta"]["total"] for page in pages} == {13}
    assert {page.json["meta"]["limit"] for page in pages} == {3}


def test_walking_filtered_pages(app, alice):
    milk = insert(app, titles=[f"milk {n}" for n in range(5)] + ["bread"], completed=True)[:5]
    insert(app, titles=["milk pending"])

    ids, pages = walk(alice, 2, q="milk", status="completed", sort="title")

    assert ids == milk  # "milk 0" to "milk 4", in title order
    assert [page.json["meta"]["count"] for page in pages] == [2, 2, 1]
    assert [page.json["meta"]["total"] for page in pages] == [5, 5, 5]


def test_a_page_that_ends_exactly_has_no_next_cursor(app, alice):
    insert(app, titles=["a", "b", "c", "d"], step=timedelta(seconds=1))

    ids, pages = walk(alice, 2)

    assert len(pages) == 2
    assert pages[1].json["meta"] == {**pages[1].json["meta"], "count": 2, "next_cursor": None}


def test_paging_stays_correct_while_tasks_are_added_and_removed(app, alice):
    ids = insert(app, titles=[f"t{n}" for n in range(10)], step=timedelta(seconds=1))
    newest_first = list(reversed(ids))

    first = alice.get(LIST, query_string={"limit": 3})
    seen = [task["id"] for task in first.json["data"]]
    assert seen == newest_first[:3]
    # Between pages: a new task (before the cursor), the cursor's own task and an
    # unseen task are deleted.
    create(alice, title="new")
    alice.delete(f"{LIST}/{newest_first[2]}")
    alice.delete(f"{LIST}/{newest_first[5]}")
    cursor = first.json["meta"]["next_cursor"]
    while cursor:
        page = alice.get(LIST, query_string={"limit": 3, "cursor": cursor})
        seen += [task["id"] for task in page.json["data"]]
        cursor = page.json["meta"]["next_cursor"]

    assert seen == [i for i in newest_first if i != newest_first[5]]


def test_tampered_cursor_is_400(app, alice):
    insert(app, titles=["a", "b", "c"], step=timedelta(seconds=1))
    cursor = alice.get(LIST, query_string={"limit": 1}).json["meta"]["next_cursor"]
    flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    _payload, signature = cursor.rsplit(".", 1)
    forged = "WyJ0aXRsZSIsImEiLCIwMCJd." + signature  # another payload, old signature

    for bad in (flipped, forged, "abc", "", "x" * 1001, cursor + "x", "...."):
        response = alice.get(LIST, query_string={"limit": 1, "cursor": bad})
        assert response.status_code == 400, bad
        error = response.json["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"] == {"query": {"cursor": ["Invalid or tampered cursor."]}}, bad


def test_cursor_signed_with_another_key_is_400(make_app, client_for, app, alice):
    insert(app, titles=["a", "b"], step=timedelta(seconds=1))
    other = make_app(SECRET_KEY="another-secret-key-of-at-least-32-bytes")
    other_client = other.test_client()
    other_client.environ_base["HTTP_AUTHORIZATION"] = alice.environ_base["HTTP_AUTHORIZATION"]
    cursor = other_client.get(LIST, query_string={"limit": 1}).json["meta"]["next_cursor"]

    response = alice.get(LIST, query_string={"limit": 1, "cursor": cursor})

    assert response.status_code == 400
    assert response.json["error"]["details"] == {
        "query": {"cursor": ["Invalid or tampered cursor."]}
    }


def test_cursor_of_another_sort_is_400(app, alice):
    insert(app, titles=["a", "b", "c"], step=timedelta(seconds=1))
    cursor = alice.get(LIST, query_string={"limit": 1, "sort": "title"}).json["meta"]["next_cursor"]

    assert (
        alice.get(LIST, query_string={"limit": 1, "sort": "title", "cursor": cursor}).status_code
        == 200
    )
    for sort in ("-title", "-created_at", "created_at"):
        response = alice.get(LIST, query_string={"limit": 1, "sort": sort, "cursor": cursor})
        assert response.status_code == 400
        assert response.json["error"]["details"] == {
            "query": {"cursor": ["The cursor belongs to another sort order."]}
        }


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"status": "done"}, "status", "Must be one of: all, pending, completed."),
        ({"sort": "id"}, "sort", SORT),
        ({"sort": "+title"}, "sort", SORT),
        ({"q": ""}, "q", "Length must be between 1 and 200."),
        ({"q": "x" * 201}, "q", "Length must be between 1 and 200."),
        ({"stauts": "pending"}, "stauts", "Unknown field."),
        ({"page": "2"}, "page", "Unknown field."),
    ],
)
def test_bad_query_parameters_are_400(alice, params, field, message):
    response = alice.get(LIST, query_string=params)

    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == "The request is not valid; see details."
    assert error["details"] == {"query": {field: [message]}}


def test_unknown_query_parameter_message(alice):
    response = alice.get(LIST, query_string={"foo": "1"})

    assert response.json["error"]["details"] == {"query": {"foo": ["Unknown field."]}}


@pytest.mark.parametrize("sort", ["title", "-title"])
def test_cursors_after_the_longest_titles_are_accepted(app, alice, sort):
    """A cursor holds its last title: 500 4-byte characters make one of about 2,000."""
    astral = [chr(c) for c in range(0x20000, 0x2A6DF, 7)]
    for n in range(3):
        title = "".join(astral[(n * 997 + i * i) % len(astral)] for i in range(500))
        create(alice, title=title)

    ids, pages = walk(alice, 1, sort=sort)

    assert ids == expected_order(app, sort)
    assert max(len(page.json["meta"]["next_cursor"] or "") for page in pages) > 1000


def test_q_of_200_characters_is_accepted(app, alice):
    (long_title,) = insert(app, titles=["a" + "x" * 200])
    insert(app, titles=["x" * 199])

    assert [task["id"] for task in alice.get(LIST, query_string={"q": "x" * 200}).json["data"]] == [
        long_title
    ]


def test_tasks_of_another_user_never_appear_in_pages(app, alice):
    mine = insert(app, titles=["mine"])
    insert(app, user="bob", titles=["mine too"] * 5)

    ids, pages = walk(alice, 1, q="mine")

    assert ids == mine
    assert len(pages) == 1 and pages[0].json["meta"]["total"] == 1


def test_total_is_counted_in_the_snapshot_of_its_page(app, alice, monkeypatch):
    # A task committed right after the page was read, before anything else: the
    # page's total must not count it (it did when the total was a second statement).
    insert(app, titles=["a", "b", "c"], step=timedelta(seconds=1))
    read = roundtrip.rows
    sneaked_in = []

    def rows_then_insert(statement, user_id, params, plain=False):
        found = read(statement, user_id, params, plain)
        if "row_limit" in params and not sneaked_in:
            sneaked_in.extend(insert(app, titles=["sneaked in"], created_at=EPOCH))
        return found

    monkeypatch.setattr(roundtrip, "rows", rows_then_insert)
    page = alice.get(LIST, query_string={"limit": 2})
    monkeypatch.undo()

    assert titles(page) == ["c", "b"]
    assert page.json["meta"]["count"] == 2
    assert page.json["meta"]["total"] == 3
    assert page.json["meta"]["next_cursor"] is not None
    assert len(sneaked_in) == 1
    assert alice.get(LIST, query_string={"limit": 2}).json["meta"]["total"] == 4


def test_a_page_emptied_since_its_cursor_still_counts_the_matches(app, alice):
    first, second, third = insert(app, titles=["a", "b", "c"], step=timedelta(seconds=1))
    page = alice.get(LIST, query_string={"limit": 2})
    assert titles(page) == ["c", "b"]
    assert alice.delete(f"{LIST}/{first}").status_code == 204

    rest = alice.get(LIST, query_string={"limit": 2, "cursor": page.json["meta"]["next_cursor"]})

    assert rest.status_code == 200
    assert rest.json["data"] == []
    assert rest.json["meta"] == {**rest.json["meta"], "count": 0, "total": 2, "next_cursor": None}
