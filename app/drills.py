"""Training drills: bad "migration consolidations" applied to the sandbox after a baseline backup,
each with the answer the runbook's decision matrix should reach. Drills touch nothing but the
sandbox the console started itself."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import BadInput


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    difficulty: str          # easy | medium | hard
    briefing: str            # what the on-call engineer is told
    migration: str           # the bad migration (SQL)
    expected_tier: str       # the decision matrix's tier
    expected_type: str | None  # schema | partial | full; None where no rollback is right
    tables: tuple[str, ...] = ()
    needs: str = ""          # a capability not built yet, if any (the drill is listed, not played)
    debrief: str = ""
    then: str | None = None  # a second rollback after the first (Type 1 then Type 2)
    fix: str = ""            # FORWARD-FIX: the fix the verdict suggests, in words
    # A point-in-time drill (app/pitr): users write between the baseline dump and the
    # migration, a mark is made just before it, and the right source is that moment.
    before_mark: str = ""    # users' writes after the dump, before the mark (SQL)
    mark: str = ""           # the mark (named restore point) made just before the migration
    after_mark: str = ""     # a second mark made right after the migration (the repair's --after)
    after: str = ""          # users' writes after the migration (SQL)
    source: str = "backup_set"   # the right source: backup_set | point_in_time (the mark)
    # What the screen-following player (tests/test_drill_tmux.py) lacks to play it to 100:
    # left out of playable() (the curriculum, the player) meanwhile; played when named.
    player_needs: str = ""

    @property
    def point_in_time(self) -> bool:
        return self.source == "point_in_time"

    @property
    def types(self) -> tuple[str, ...]:
        """The rollbacks of the right answer, in order."""
        return tuple(t for t in (self.expected_type, self.then) if t)

    @property
    def answer(self) -> str:
        if self.expected_tier != "IMMEDIATE ROLLBACK":
            return f"{self.expected_tier} / no rollback" + (f": {self.fix}" if self.fix else "")
        if self.point_in_time and self.after_mark:
            return (f"{self.expected_tier} / {' then '.join(self.types)} of "
                    f"{', '.join(self.tables)} from the two marks ({self.mark} before the "
                    f"migration, {self.after_mark} right after it), conflicts kept as the "
                    "users left them")
        if self.point_in_time:
            return (f"{self.expected_tier} / {' then '.join(self.types)} of "
                    f"{', '.join(self.tables)} from the point in time (the mark {self.mark})")
        return f"{self.expected_tier} / {' then '.join(self.types)}"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "corrupted-captions", "Captions wiped by a data fix", "easy",
        "Users report blank captions and broken downloads on half of the media pages since "
        "tonight's migration consolidation.",
        "UPDATE public.media SET caption = NULL, mime_type = 'application/octet-stream', "
        "updated_at = now() WHERE id % 2 = 0;",
        "IMMEDIATE ROLLBACK", "partial", ("public.media",),
        debrief="One table's values were rewritten; the schema is intact. A partial data "
                "rollback of media restores it in one transaction; nothing else is touched."),
    Scenario(
        "lost-gatherings", "Tea gatherings deleted", "easy",
        "Teachers say every chakai before July has disappeared from the calendar.",
        "DELETE FROM public.chakai WHERE held_on < DATE '2025-07-01';",
        "IMMEDIATE ROLLBACK", "partial", ("public.chakai",),
        debrief="Rows were lost from one table. Type 2 on chakai brings them back; rows "
                "written since the backup are exported first."),
    Scenario(
        "orphaned-media", "Media left pointing at deleted objects", "medium",
        "Media pages answer 'object not found' for some users; the nightly integrity report "
        "lists thousands of orphans.",
        "ALTER TABLE public.media DROP CONSTRAINT media_object_id_fkey;"
        "DELETE FROM public.objects WHERE id % 7 = 0;",
        "IMMEDIATE ROLLBACK", "partial", ("public.objects",),
        debrief="The consolidation dropped media's foreign key to objects, then deleted "
                "objects that media still point at: foreign key violations. Type 2 of objects "
                "brings the parents back and adds the dropped key back (validated in the same "
                "transaction); media's own rows never changed."),
    Scenario(
        "widespread-corruption", "A consolidation rewrote most tables", "hard",
        "Everything looks wrong: names, captions, classes. Support is overwhelmed.",
        "UPDATE public.objects SET name = upper(name), updated_at = now();"
        "UPDATE public.media SET caption = 'migrated', updated_at = now();"
        "UPDATE public.accounts SET display_name = 'member', updated_at = now();"
        "UPDATE public.local_classes SET region = 'unknown', updated_at = now();",
        "IMMEDIATE ROLLBACK", "full",
        debrief="Most tables are corrupted: the runbook's last resort, a complete restore. The "
                "console restores into a new database, validates it, switches, and keeps the "
                "broken one aside; where the database cannot be swapped (Supabase's postgres), "
                "it restores the app's schemas in place, in one transaction."),
    Scenario(
        "dropped-table", "A table dropped by the consolidation", "hard",
        "The gatherings page answers errors for everyone.",
        "DROP TABLE public.chakai;",
        "IMMEDIATE ROLLBACK", "schema", ("public.chakai",), then="partial",
        debrief="A dropped table cannot be reloaded by Type 2 alone (there is nothing to "
                "reload into). Type 1 brings chakai back with its keys, indexes, policies and "
                "grants, empty; Type 2 of chakai (shift+d when Type 1 is done) brings its rows "
                "back. A complete restore would work too, but would throw away every other "
                "table's writes since the backup."),
    Scenario(
        "dropped-index", "A dropped index", "easy",
        "Pages are slower; nothing is broken.",
        "DROP INDEX public.objects_owner_id_idx;",
        "FORWARD-FIX", None,
        debrief="Performance only: forward-fix (recreate the index, CONCURRENTLY); a rollback "
                "would cost downtime for nothing.",
        fix="the suggested fix, CREATE INDEX CONCURRENTLY objects_owner_id_idx (the backup's "
            "definition)"),
    Scenario(
        "cosmetic-column", "A cosmetic schema change", "easy",
        "A designer asks why the admin shows a new empty column.",
        "ALTER TABLE public.objects ADD COLUMN display_order integer;",
        "FORWARD-FIX", None,
        debrief="The runbook lists cosmetic problems under forward-fix: no rollback.",
        fix="keep the column, or drop it with the suggested fix once nothing uses it"),
    Scenario(
        "double-backfill", "A backfill that ran twice", "medium",
        "Some teachers see each of their autumn gatherings listed twice; everything else "
        "works.",
        "INSERT INTO public.chakai (host_id, local_class_id, title, held_on, season, guests) "
        "SELECT host_id, local_class_id, title, held_on, season, guests FROM public.chakai "
        "WHERE season = 'autumn';",
        "MONITOR AND ASSESS", None,
        debrief="Rows were added, none lost or changed: more rows than expected, no integrity "
                "issue. The runbook says monitor and assess: a rollback would throw away every "
                "write since the backup for duplicates a query can remove. Watch, find the "
                "duplicates, and remove them forward."),
    Scenario(
        "rls-blocks-users", "A policy that locks users out", "medium",
        "Logged-in users see empty collections; the data is there for admins.",
        'DROP POLICY "objects: owner reads" ON public.objects;'
        'DROP POLICY "objects: owner writes" ON public.objects;'
        'CREATE POLICY "objects: owner reads" ON public.objects FOR SELECT TO authenticated '
        "USING (false);",
        "IMMEDIATE ROLLBACK", "schema",
        debrief="RLS blocks legitimate access: a schema-only rollback restores the policies; "
                "the data never changed."),
    Scenario(
        "broken-auth", "Authentication broken by a grant", "medium",
        "Nobody can see their own objects; logins work but everything is empty or errors.",
        "REVOKE EXECUTE ON FUNCTION auth.uid() FROM PUBLIC, authenticated;",
        "IMMEDIATE ROLLBACK", "schema",
        debrief="auth.uid() is no longer callable by the API role: a schema-only rollback "
                "restores the grant."),
    Scenario(
        "late-writes", "Captions wiped after a busy evening", "medium",
        "Every caption is gone since the migration, the evening's uploads and edits too. The "
        "deploy script marked the moment before it (before-migration) and the WAL is "
        "archived: `rollback-console pitr`.",
        "UPDATE public.media SET caption = NULL, updated_at = now();",
        "IMMEDIATE ROLLBACK", "partial", ("public.media",),
        debrief="One table's values were wiped; the schema is intact, so Type 2 of media is "
                "the type. But users wrote to media (new uploads, edited captions) between the "
                "nightly dump and the migration: a Type 2 from the dump throws those rows away "
                "with the damage. The WAL archive can restore media as it was at the mark made "
                "just before the migration (--at before-migration; restored aside, never on "
                "the live server), which keeps every write up to the migration; the other "
                "tables keep their writes since.",
        before_mark=(
            "INSERT INTO public.media (object_id, owner_id, url, mime_type, bytes, caption) "
            "SELECT object_id, owner_id, url || '?evening', mime_type, bytes, "
            "'evening upload: ' || coalesce(caption, 'untitled') FROM public.media "
            "WHERE id % 40 = 0;"
            "UPDATE public.media SET caption = coalesce(caption, '') || ' (edited by its owner)'"
            " WHERE id % 30 = 1;"
            "INSERT INTO public.chakai (host_id, local_class_id, title, held_on, season, guests) "
            "SELECT host_id, local_class_id, title || ' (again)', held_on + 7, season, guests "
            "FROM public.chakai WHERE id % 25 = 0;"
            "UPDATE public.objects SET description = coalesce(description, '') || ' Re-dated.' "
            "WHERE id % 20 = 0;"),
        mark="before-migration",
        after=(
            "UPDATE public.objects SET maker = coalesce(maker, 'unknown') || ' (attributed)' "
            "WHERE id % 25 = 3;"
            "INSERT INTO public.chakai (host_id, local_class_id, title, held_on, season, guests) "
            "SELECT host_id, local_class_id, title || ' (late booking)', held_on + 14, season, "
            "guests FROM public.chakai WHERE id % 29 = 1 AND id < 29;"),
        source="point_in_time",
        player_needs="p on the plan screen (from a point in time: the mark), which the "
                     "screen does not ask for; the console and --headless play it to 100 "
                     "when it is named"),
    Scenario(
        "busy-afternoon", "Captions and uploads lost while users kept editing", "hard",
        "Since the afternoon's migration some media are gone, captions are blank and downloads "
        "come back as octet-stream; users kept uploading and editing media for an hour before "
        "anyone noticed. The deploy script marked the moments before and after the migration "
        "(before-migration, after-migration) and the WAL is archived: `rollback-console pitr`.",
        "DELETE FROM public.media WHERE id % 20 = 1;"
        "UPDATE public.media SET caption = NULL WHERE id % 10 = 2;"
        "UPDATE public.media SET mime_type = 'application/octet-stream' WHERE id % 20 = 3;",
        "IMMEDIATE ROLLBACK", "repair", ("public.media",),
        debrief="The migration deleted 5 % of media's rows, blanked 10 % of the captions and "
                "rewrote 5 % of the mime types; then users kept writing to media (new uploads, "
                "edits of damaged rows and of untouched ones) and to the other tables. Any "
                "Type 2 replaces the whole table: from the dump it loses every write since the "
                "dump, and even from the mark before-migration it loses everything users wrote "
                "to media after the migration. The repair (Type 4) compares the two marks the "
                "deploy script made (--at before-migration --after after-migration): it knows "
                "exactly which rows the migration deleted and changed, puts those back, and "
                "leaves every row users wrote since; a damaged row a user edited afterwards is "
                "a conflict, kept as the user left it (--conflicts keep, the default). From "
                "the dump only (--damage) the repair has to guess what the migration did by "
                "the shape of the damage, and cannot tell a user's edit from the migration's.",
        before_mark=(
            "INSERT INTO public.media (object_id, owner_id, url, mime_type, bytes, caption) "
            "SELECT object_id, owner_id, url || '?morning', mime_type, bytes, "
            "'morning upload: ' || coalesce(caption, 'untitled') FROM public.media "
            "WHERE id % 45 = 0;"
            "UPDATE public.objects SET description = coalesce(description, '') || ' Re-dated.' "
            "WHERE id % 20 = 0;"),
        mark="before-migration", after_mark="after-migration",
        after=(
            "INSERT INTO public.media (object_id, owner_id, url, mime_type, bytes, caption) "
            "SELECT object_id, owner_id, url || '?afternoon', 'image/png', bytes + 1, "
            "'afternoon upload' FROM public.media WHERE id % 50 = 7;"
            "UPDATE public.media SET caption = 'retitled by its owner' "
            "WHERE id % 100 IN (12, 22, 43);"
            "UPDATE public.media SET caption = coalesce(caption, '') || ' (edited)' "
            "WHERE id % 10 = 5;"
            "UPDATE public.objects SET maker = coalesce(maker, 'unknown') || ' (attributed)' "
            "WHERE id % 25 = 3;"
            "INSERT INTO public.chakai (host_id, local_class_id, title, held_on, season, guests) "
            "SELECT host_id, local_class_id, title || ' (late booking)', held_on + 14, season, "
            "guests FROM public.chakai WHERE id % 29 = 1 AND id < 29;"),
        source="point_in_time",
        player_needs="keys for the plan screen's repair (its two moments: before-migration, "
                     "then after-migration) that the tmux player does not press yet; the "
                     "console and --headless (`run --type repair ... --at before-migration "
                     "--after after-migration`) play it to 100 when it is named"),
)
BY_NAME = {s.name: s for s in SCENARIOS}


def playable(by_name: bool = False) -> list[Scenario]:
    """The scenarios of the curriculum (and of the screen-following player); ``by_name``:
    also those played only when named (``player_needs``)."""
    return [s for s in SCENARIOS if not s.needs and (by_name or not s.player_needs)]


def pick(name: str | None, mastered: set[str] | frozenset[str] = frozenset()) -> Scenario:
    """The named scenario, or the next of the curriculum: the first playable one the operator
    has not yet scored full marks on (then it starts again from the top)."""
    if name is None:
        todo = [s for s in playable() if s.name not in mastered]
        return (todo or playable())[0]
    scenario = BY_NAME.get(name)
    if scenario is None:
        raise BadInput(f"no drill scenario {name!r}: `rollback-console drill --list` shows them")
    if scenario.needs:
        raise BadInput(f"drill {name!r} needs {scenario.needs}, which is not built yet; pick "
                       "another (drill --list)")
    return scenario
