using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;
using QrOrleans.Silo.Hosting;

namespace QrOrleans.Tests.Hosting;

/// <summary>
/// The embedded grain storage's contract, on the provider itself: ETags fence every write and clear as Orleans' Redis
/// provider fences them, a clear leaves no record, and what is stored is the serializer's bytes, so no two readers
/// ever share an object.
/// </summary>
public sealed class LocalGrainStorageTests
{
    private static readonly IActivatorProvider Activators =
        new ServiceCollection().AddSerializer().BuildServiceProvider().GetRequiredService<IActivatorProvider>();

    private static readonly GrainId Alice = GrainId.Create("note", "alice");
    private static readonly GrainId Bob = GrainId.Create("note", "bob");

    private readonly LocalStateStore _store = new();

    public sealed class Note
    {
        public string Text { get; set; } = "";

        public List<string> Tags { get; set; } = [];
    }

    /// <summary>An activation's copy of its state, as Orleans hands it to a provider.</summary>
    private sealed class Slot(Note note, string? etag = null) : IGrainState<Note>
    {
        public Note Note { get; set; } = note;

        public string? ETag { get; set; } = etag;

        public bool RecordExists { get; set; }

        Note? IGrainState<Note>.State
        {
            get => Note;
            set => Note = value!;
        }
    }

    private LocalGrainStorage Storage(string name = "notes") => new(name, GrainStateJson.Serializer, _store, Activators);

    private static async Task<Slot> ReadAsync(IGrainStorage storage, GrainId grain, string stateName = "note")
    {
        var state = new Slot(new Note());
        await storage.ReadStateAsync(stateName, grain, state);
        return state;
    }

    private static async Task<Slot> WriteNewAsync(IGrainStorage storage, GrainId grain, string text, string stateName = "note")
    {
        var state = new Slot(new Note { Text = text });
        await storage.WriteStateAsync(stateName, grain, state);
        return state;
    }

    [Fact]
    public async Task A_state_never_written_reads_as_no_record_with_no_etag_and_a_new_object()
    {
        var read = await ReadAsync(Storage(), Alice);

        Assert.False(read.RecordExists);
        Assert.Null(read.ETag);
        Assert.Equal("", read.Note.Text);
    }

    [Fact]
    public async Task A_first_write_expects_no_etag_and_a_read_returns_what_it_wrote_under_the_etag_it_was_given()
    {
        var storage = Storage();
        var written = await WriteNewAsync(storage, Alice, "hello");

        Assert.True(written.RecordExists);
        Assert.False(string.IsNullOrEmpty(written.ETag));
        var read = await ReadAsync(storage, Alice);
        Assert.True(read.RecordExists);
        Assert.Equal(written.ETag, read.ETag);
        Assert.Equal("hello", read.Note.Text);
    }

    [Fact]
    public async Task A_write_with_a_stale_etag_is_refused_and_what_is_stored_stays_as_it_was()
    {
        var storage = Storage();
        var stale = await WriteNewAsync(storage, Alice, "first");
        var other = await ReadAsync(storage, Alice);
        other.Note.Text = "second";
        await storage.WriteStateAsync("note", Alice, other);

        stale.Note.Text = "lost";
        var refused = await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("note", Alice, stale));

        Assert.Equal(other.ETag, refused.StoredEtag);
        Assert.NotEqual(other.ETag, stale.ETag); // the refused caller keeps the ETag it had
        var read = await ReadAsync(storage, Alice);
        Assert.Equal("second", read.Note.Text);
        Assert.Equal(other.ETag, read.ETag);
    }

    [Fact]
    public async Task A_first_write_with_a_made_up_etag_is_refused_and_stores_nothing()
    {
        var storage = Storage();
        var madeUp = new Slot(new Note { Text = "forged" }, "1");

        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("note", Alice, madeUp));

        Assert.False((await ReadAsync(storage, Alice)).RecordExists);
        Assert.Null(_store.Find("notes", "note", Alice));
    }

    [Fact]
    public async Task Of_two_activations_that_both_read_no_record_only_the_first_to_write_is_taken()
    {
        var storage = Storage();
        var first = await ReadAsync(storage, Alice);
        var second = await ReadAsync(storage, Alice);
        first.Note.Text = "first";
        await storage.WriteStateAsync("note", Alice, first);

        second.Note.Text = "second";
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("note", Alice, second));

        Assert.Equal("first", (await ReadAsync(storage, Alice)).Note.Text);
    }

    [Fact]
    public async Task After_a_clear_a_read_finds_no_record_and_only_a_write_expecting_none_is_taken()
    {
        var storage = Storage();
        var state = await WriteNewAsync(storage, Alice, "doomed");
        var before = state.ETag;

        await storage.ClearStateAsync("note", Alice, state);

        Assert.False(state.RecordExists);
        Assert.Null(state.ETag);
        Assert.Equal("", state.Note.Text);
        var read = await ReadAsync(storage, Alice);
        Assert.False(read.RecordExists);
        Assert.Null(read.ETag);
        Assert.Null(_store.Find("notes", "note", Alice)); // nothing left behind for a state that is gone

        var stale = new Slot(new Note { Text = "from before the clear" }, before);
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("note", Alice, stale));
        state.Note.Text = "again";
        await storage.WriteStateAsync("note", Alice, state);
        Assert.Equal("again", (await ReadAsync(storage, Alice)).Note.Text);
        Assert.NotEqual(before, state.ETag); // an ETag is never issued twice, even after a clear
    }

    [Fact]
    public async Task A_clear_with_a_stale_etag_is_refused_and_keeps_the_record()
    {
        var storage = Storage();
        var stale = await WriteNewAsync(storage, Alice, "first");
        var current = await ReadAsync(storage, Alice);
        current.Note.Text = "second";
        await storage.WriteStateAsync("note", Alice, current);

        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.ClearStateAsync("note", Alice, stale));
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.ClearStateAsync("note", Alice, new Slot(new Note())));

        var read = await ReadAsync(storage, Alice);
        Assert.True(read.RecordExists);
        Assert.Equal("second", read.Note.Text);
    }

    [Fact]
    public async Task A_clear_of_a_state_never_written_expecting_no_record_is_taken()
    {
        var storage = Storage();
        var state = new Slot(new Note());

        await storage.ClearStateAsync("note", Alice, state);

        Assert.False(state.RecordExists);
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.ClearStateAsync("note", Alice, new Slot(new Note(), "7")));
    }

    [Fact]
    public async Task States_never_alias_an_object_changed_after_its_write_or_its_read_changes_nothing_stored()
    {
        var storage = Storage();
        var shared = new Note { Text = "shared", Tags = ["a"] };
        var alice = new Slot(shared);
        var bob = new Slot(shared);
        await storage.WriteStateAsync("note", Alice, alice);
        await storage.WriteStateAsync("note", Bob, bob);

        shared.Text = "changed after the writes";
        shared.Tags.Add("b");
        var first = await ReadAsync(storage, Alice);
        first.Note.Tags.Add("changed after the read");
        var second = await ReadAsync(storage, Alice);

        Assert.Equal("shared", second.Note.Text);
        Assert.Equal(["a"], second.Note.Tags);
        Assert.NotSame(first.Note, second.Note);
        Assert.NotSame(second.Note, (await ReadAsync(storage, Bob)).Note);

        bob.Note = new Note { Text = "bob's own" };
        await storage.WriteStateAsync("note", Bob, bob);
        Assert.Equal("shared", (await ReadAsync(storage, Alice)).Note.Text);
        Assert.Equal("bob's own", (await ReadAsync(storage, Bob)).Note.Text);
    }

    [Fact]
    public async Task What_is_stored_is_exactly_the_serializer_s_bytes_as_redis_would_hold_them()
    {
        var storage = Storage();
        var note = new Note { Text = "bytes", Tags = ["x"] };
        await storage.WriteStateAsync("note", Alice, new Slot(note));

        var expected = GrainStateJson.Serializer.Serialize(note).ToArray();
        Assert.Equal(expected, _store.Find("notes", "note", Alice)!.Data.ToArray());
        Assert.Equal("""{"text":"bytes","tags":["x"]}""", System.Text.Encoding.UTF8.GetString(expected));
    }

    [Fact]
    public async Task Providers_and_state_names_each_keep_their_own_record_of_a_grain()
    {
        var notes = Storage("notes");
        var other = Storage("other");
        await WriteNewAsync(notes, Alice, "notes/note");
        await WriteNewAsync(notes, Alice, "notes/draft", stateName: "draft");

        Assert.False((await ReadAsync(other, Alice)).RecordExists);
        Assert.Equal("notes/note", (await ReadAsync(notes, Alice)).Note.Text);
        Assert.Equal("notes/draft", (await ReadAsync(notes, Alice, "draft")).Note.Text);
        // Another provider instance over the same store (another silo of one test cluster) sees the same records.
        Assert.Equal("notes/note", (await ReadAsync(Storage("notes"), Alice)).Note.Text);
    }

    [Fact]
    public async Task Of_many_concurrent_writes_from_one_etag_exactly_one_is_taken()
    {
        var storage = Storage();
        var etag = (await WriteNewAsync(storage, Alice, "start")).ETag;

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(async () =>
        {
            try
            {
                await storage.WriteStateAsync("note", Alice, new Slot(new Note { Text = $"writer {i}" }, etag));
                return $"writer {i}";
            }
            catch (InconsistentStateException)
            {
                return null;
            }
        }, TestContext.Current.CancellationToken)));

        var winner = Assert.Single(outcomes, o => o is not null);
        Assert.Equal(winner, (await ReadAsync(storage, Alice)).Note.Text);
    }

    [Fact]
    public async Task A_stored_null_reads_as_no_record_but_its_etag_still_fences_the_next_write()
    {
        var storage = Storage();
        var state = new Slot(null!);
        await storage.WriteStateAsync("note", Alice, state);

        var read = await ReadAsync(storage, Alice);

        Assert.False(read.RecordExists);
        Assert.Equal(state.ETag, read.ETag);
        Assert.NotNull(read.Note);
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("note", Alice, new Slot(new Note())));
        read.Note.Text = "now something";
        await storage.WriteStateAsync("note", Alice, read);
        Assert.True((await ReadAsync(storage, Alice)).RecordExists);
    }
}
